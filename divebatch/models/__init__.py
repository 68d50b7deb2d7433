"""models: the networks a run trains (linear, MLP, CNN, ResNet-18) and the nanoGPT test model."""
