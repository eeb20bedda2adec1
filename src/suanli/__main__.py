from suanli.cli import app

app(prog_name="suanli")
