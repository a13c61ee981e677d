"""plait.orm"""
