"""The certification core shared by the agent and the portal.

Plain Python: nothing here may import Django or Paddle.
"""
