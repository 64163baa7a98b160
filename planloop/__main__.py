from planloop.cli import app

app(prog_name="planloop")
