"""The ``fastcka`` Click batch tool (installed as ``fastcka.cli``): one module per subcommand."""
