"""plait.broker"""
