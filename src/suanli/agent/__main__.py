"""`python -m suanli.agent --site ID ...`: the same as `suanli agent`."""

from suanli.cli_service import agent_app

agent_app()
