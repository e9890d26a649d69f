"""The local launcher, with small plain-Python scripts standing in for training."""

import io
import json
import textwrap
import time

import pytest

from kerafine.distributed import launcher
from kerafine.errors import KerafineError


def _script(tmp_path, body, name="w.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_each_worker_gets_its_tf_config_on_loopback_and_prefixed_output(tmp_path):
    script = _script(
        tmp_path,
        """
        import json, os, sys
        cfg = json.loads(os.environ["TF_CONFIG"])
        print(json.dumps({"cfg": cfg, "argv": sys.argv[1:]}))
        """,
    )
    out = io.StringIO()
    assert launcher.launch(script, ["--lr", "0.1"], workers=3, out=out) == 0
    lines = [l for l in out.getvalue().splitlines() if not l.startswith("[launcher]")]
    assert len(lines) == 3
    configs = {}
    for line in lines:
        prefix, rest = line.split("] ", 1)
        index = int(prefix.removeprefix("[worker "))
        got = json.loads(rest)
        cfg = got["cfg"]
        assert got["argv"] == ["--lr", "0.1"]
        assert cfg["task"] == {"type": "worker", "index": index}
        configs[index] = cfg["cluster"]["worker"]
    assert sorted(configs) == [0, 1, 2]
    addresses = configs[0]
    assert all(c == addresses for c in configs.values())  # one cluster
    assert all(a.startswith("127.0.0.1:") for a in addresses) and len(set(addresses)) == 3


def test_a_failing_worker_stops_the_others_and_the_run_fails(tmp_path):
    script = _script(
        tmp_path,
        """
        import json, os, sys, time
        if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
            time.sleep(0.5)
            sys.exit(3)
        time.sleep(120)
        """,
    )
    out = io.StringIO()
    started = time.monotonic()
    code = launcher.launch(script, workers=2, grace=5, out=out)
    assert code == 3
    assert time.monotonic() - started < 60  # worker 0 was stopped, not waited for
    assert "[launcher] worker 1 exited with code 3; stopping the others" in out.getvalue()


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    script = _script(
        tmp_path,
        """
        import json, os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
            sys.exit(1)
        print("ready", flush=True)
        time.sleep(120)
        """,
    )
    started = time.monotonic()
    assert launcher.launch(script, workers=2, grace=1, out=io.StringIO()) == 1
    assert time.monotonic() - started < 60


def test_timeout_stops_every_worker(tmp_path):
    script = _script(tmp_path, "import time\ntime.sleep(120)\n")
    out = io.StringIO()
    assert launcher.launch(script, workers=2, timeout=1, grace=2, out=out) == 124
    assert "timeout after 1 s" in out.getvalue()


def test_bad_arguments(tmp_path):
    script = _script(tmp_path, "pass\n")
    with pytest.raises(KerafineError, match="`workers`.*received 0.*positive int"):
        launcher.launch(script, workers=0)
    with pytest.raises(KerafineError, match="`timeout`.*received -1"):
        launcher.launch(script, timeout=-1)
    with pytest.raises(KerafineError, match="`script`.*existing Python script"):
        launcher.launch(str(tmp_path / "missing.py"))


def test_command_line(tmp_path, capsys):
    script = _script(tmp_path, "import sys\nprint('args', sys.argv[1:])\nsys.exit(0)\n")
    assert launcher.main(["--workers", "2", script, "a", "--b"]) == 0
    assert "[worker 1] args ['a', '--b']" in capsys.readouterr().out
    assert launcher.main(["--workers", "0", script]) == 2
    assert "`workers`" in capsys.readouterr().err
