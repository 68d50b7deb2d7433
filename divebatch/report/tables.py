"""Which columns the run tables show, and their headings (CLI `list` / `compare`, Runs page)."""

COMPARE_COLUMNS = [("id", "run"), ("method", "method"), ("status", "status"),
                   ("epochs", "epochs"), ("final_acc", "final acc"), ("best_acc", "best acc"),
                   ("final_val_loss", "final val loss"),
                   ("time_to_common", "train s to common"), ("speedup", "speed-up"),
                   ("epochs_to_target", "epochs to own-1pt"),
                   ("time_to_target", "train s to own-1pt"),
                   ("speedup_own_shown", "speed-up own-1pt"), ("train_time", "train s total"),
                   ("samples_seen", "samples"), ("final_batch_size", "final B"),
                   ("step_ms_measured", "ms/step measured"), ("step_ms_plain", "ms/step plain"),
                   ("speedup_own_flag", "note")]
LIST_COLUMNS = [("id", "id"), ("name", "name"), ("problem", "problem"),
                ("method", "method"), ("status", "status"), ("epochs", "epochs"),
                ("final_acc", "final acc"), ("final_val_loss", "val loss"),
                ("train_time", "train s")]
