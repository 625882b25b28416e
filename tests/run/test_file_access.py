"""A spec names no files: compiling, training, saving and loading one opens only the spec, the files the user
names, boltc's own package files, its compile cache and the compiler's scratch files (and what Python itself
loads), whatever the spec says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import boltc

# Strings in every place a spec takes one, each shaped like a path, a shell command or a C escape.
HOSTILE = """\
model etc_passwd {
    input  text: text(features=64, column="/etc/passwd")
    input  tags: categorical(features=16, delimiter="/", column="~/.ssh/id_rsa")
    target label: classes[3, column="$(touch /tmp/boltc-pwned)"]
    h = dense(text, 8, activation=relu)
    g = dense(tags, 4, activation=relu)
    j = concat(h, g)
    o = dense(j, 3, activation=softmax)
    loss cross_entropy(o, label)
    train { batch_size = 4, epochs = 1 }
}
"""
DATA = '"/etc/passwd","~/.ssh/id_rsa","$(touch /tmp/boltc-pwned)"\nred apple,a/b,x\ngreen pear,b,y\n'
CHILD = """
import json, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and isinstance(args[0], (str, bytes)) else None)
import boltc
model = boltc.load(sys.argv[1])
model.fit(sys.argv[2], progress=False)
model.predict(sys.argv[2])
model.save(sys.argv[3])
boltc.load_model(sys.argv[3])
print(json.dumps(opened))
"""


def test_a_spec_cannot_make_boltc_open_other_files(tmp_path):
    spec, data, saved = tmp_path / "hostile.bolt", tmp_path / "rows.csv", tmp_path / "out" / "m.boltm"
    spec.write_text(HOSTILE)
    data.write_text(DATA)
    saved.parent.mkdir()
    result = subprocess.run([sys.executable, "-c", CHILD, str(spec), str(data), str(saved)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    allowed = [tmp_path, Path(os.environ["BOLTC_CACHE_DIR"]), Path(boltc.__file__).resolve().parents[1],
               Path(sys.prefix), Path(sys.base_prefix), Path(sysconfig.get_paths()["purelib"]),
               Path(tempfile.gettempdir()), Path("/proc"), Path("/sys"), Path("/dev"),  # the compiler's scratch
               Path("/etc/ld.so.cache"), Path("/usr/lib"), Path("/lib")]
    opened = [Path(os.path.abspath(p)) for p in json.loads(result.stdout.splitlines()[-1])]
    assert {spec, data, saved} <= set(opened)  # the hook sees what boltc opens
    strays = [str(p) for p in opened if not any(p == root or root in p.parents for root in allowed)]
    assert strays == []
    named_by_the_spec = [str(p) for p in opened if any(word in str(p) for word in ("passwd", "id_rsa", "pwned"))]
    assert named_by_the_spec == []
    assert not Path("/tmp/boltc-pwned").exists()
