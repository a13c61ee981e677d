"""Built-in parser plugins (entry point group ``plait.parsers``): ``arithmetic.add``, ``shell``."""
