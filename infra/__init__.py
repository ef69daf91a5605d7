"""The msgtrack CDK app: one stack composed of one construct per concern (``stack.py``)."""
