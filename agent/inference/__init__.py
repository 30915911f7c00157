"""Inference measurement: a streaming completions server for the demo and a load generator for any server.

`loadgen` and `search` speak the OpenAI-compatible completions API over HTTP
and import neither Paddle nor PaddleNLP, so they start fast and can measure a
vendor's own server (such as FastDeploy's). `server` imports Paddle inside
its functions; `datatypes` imports it at once.
"""

# Environment variables of `python -m agent run`: the completions URL of a server to measure in place of
# the agent's own, and the model name to send to it.
ENDPOINT_VARIABLE = "AGENT_INFERENCE_ENDPOINT"
MODEL_VARIABLE = "AGENT_INFERENCE_MODEL"
