"""Built-in calculation plugins (entry point group ``plait.calculations``): ``arithmetic.add``, ``shell``."""
