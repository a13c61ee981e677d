"""plait.engine"""
