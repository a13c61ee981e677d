"""plait.parsers"""
