"""Stream formats shared by the daemon and the CLI. Stdlib only: the CLI imports these."""
