"""plait.schedulers"""
