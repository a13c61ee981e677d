"""plait.calculations"""
