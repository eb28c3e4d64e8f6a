"""Regulations (GDPR / CCPA): delete and suppress a person everywhere the identity graph reaches."""
