"""HumanEval (OpenAI, MIT licence) as a pytest-benchflow bench: ``pytest --benchflow=humaneval``."""
