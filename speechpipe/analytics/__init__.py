"""Call analytics after tagging: interaction measures (:mod:`.interaction`) and rule categories (:mod:`.categories`)."""
