"""Emergence: does a capability appear suddenly with scale, or only under a sharp metric?"""
