"""plait.cli"""
