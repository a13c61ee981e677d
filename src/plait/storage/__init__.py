"""plait.storage"""
