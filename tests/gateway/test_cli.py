"""The gateway's CLI commands, called in-process through ``telerad.cli.main``."""

from __future__ import annotations

import json
import subprocess
import sys

from telerad.cli import main
from sample_dicom.synthetic import write_ct_series
from tests.gateway.conftest import CLINIC_AE
from tests.gateway.helpers import instance_count


def test_clinic_add_list_remove(tmp_path, capsys):
    d = str(tmp_path / "var")
    assert main(["clinic", "add", "Xa Lang Clinic", "--ae-title", "XALANG_CT", "--host", "127.0.0.1", "--port", "104", "--data-dir", d]) == 0
    assert main(["clinic", "list", "--json", "--data-dir", d]) == 0
    out = capsys.readouterr().out
    (c,) = json.loads(out[out.index("["):])
    assert c["ae_title"] == "XALANG_CT" and c["port"] == 104
    assert main(["clinic", "add", "Other", "--ae-title", "XALANG_CT", "--data-dir", d]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["clinic", "add", "Bad", "--ae-title", "A" * 20, "--data-dir", d]) == 2
    assert "ae-title" in capsys.readouterr().err
    assert main(["clinic", "remove", "Xa Lang Clinic", "--data-dir", d]) == 0
    assert main(["clinic", "remove", "Xa Lang Clinic", "--data-dir", d]) == 2
    assert "no clinic named" in capsys.readouterr().err


def test_clinic_added_by_cli_is_accepted_live(gateway, capsys):
    from tests.peers import run_echoscu

    port = gateway.settings.dicom.port
    assert run_echoscu("127.0.0.1", port, calling_ae="NEWCLINIC", called_ae="TELERAD").returncode != 0
    assert main(["clinic", "add", "New", "--ae-title", "NEWCLINIC", "--data-dir", str(gateway.settings.data_dir)]) == 0
    gateway.clinics.invalidate()
    assert run_echoscu("127.0.0.1", port, calling_ae="NEWCLINIC", called_ae="TELERAD").returncode == 0


def test_echo_and_send_and_studies(gateway, tmp_path, capsys):
    port = str(gateway.settings.dicom.port)
    assert main(["echo", "127.0.0.1", port, "--called-ae", "TELERAD", "--calling-ae", CLINIC_AE]) == 0
    assert "success" in capsys.readouterr().out
    files = write_ct_series(tmp_path / "ct", n_images=5, rows=64, cols=64)
    (tmp_path / "ct" / "README.txt").write_text("not dicom")
    rc = main(["send", str(tmp_path / "ct"), "--host", "127.0.0.1", "--port", port, "--called-ae", "TELERAD", "--calling-ae", CLINIC_AE])
    out = capsys.readouterr()
    assert rc == 1  # the text file is reported as a failure
    assert "sent 5 of 6" in out.out and "README.txt" in out.out and "skipped" in out.out
    assert "5/5 files" in out.err  # the progress bar
    assert instance_count(gateway) == 5
    assert main(["studies", "--data-dir", str(gateway.settings.data_dir)]) == 0
    assert "Test Clinic" in capsys.readouterr().out
    assert len(files) == 5


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    from tests.peers import free_port

    assert main(["echo", "127.0.0.1", str(free_port()), "--timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err
    assert main(["send", str(tmp_path / "missing"), "--host", "127.0.0.1", "--port", "1", "--called-ae", "X"]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[dicom]\nport = 0\n")
    assert main(["studies", "--config", str(bad)]) == 2
    assert "setting 'dicom.port'" in capsys.readouterr().err
    assert main(["nonsense"]) == 2
    assert main(["send"]) == 2


def test_console_script_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "telerad.cli", "studies", "--data-dir", str(tmp_path / "v")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "no studies" in r.stdout
