"""Adapters from agent frameworks' tool-approval hooks to permission requests.

Each module imports its framework and is installed with an extra:
``permissions.integrations.openai_agents`` (``agent-sse[openai-agents]``),
``.langgraph`` (``agent-sse[langgraph]``) and ``.pydantic_ai``
(``agent-sse[pydantic-ai]``). Importing ``permissions`` imports none of them.
"""
