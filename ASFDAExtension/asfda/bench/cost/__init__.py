"""bench/cost"""
