"""meter: per-sample gradient norms and gradient diversity (the meter, its hooks, one rule
module per layer family)."""
