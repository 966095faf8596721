"""dfe.assets: downloads against a local HTTP server on loopback, the lookup order, and the shared assets."""
import hashlib, os, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest
import dfe.assets as A
from dfe.assets import AssetError

BLOB = bytes(range(256)) * 400  # 102,400 bytes
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
SERVER_LIFETIME = 60.  # seconds; the server shuts itself down after this even if a test hangs


class _Handler(BaseHTTPRequestHandler):
    "Serves BLOB at /good.bin, /blob.bin, /mirror/blob.bin; /bad.bin (wrong bytes), /cut.bin (Content-Length too large, then closes), /slow.bin (stalls); else 404."
    def log_message(self, *a): pass
    def _send(self, body, length=None):
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body); self.wfile.flush()
    def do_GET(self):
        self.server.requests.append(self.path)
        p = self.path.lstrip('/')
        if p in ('good.bin', 'blob.bin', 'mirror/blob.bin'): self._send(BLOB)
        elif p == 'bad.bin': self._send(BLOB[:-1] + b'!')
        elif p == 'cut.bin':
            self._send(BLOB[:len(BLOB)//3], length=len(BLOB))
            self.close_connection = True
        elif p == 'slow.bin':
            time.sleep(3); self._send(BLOB)
        else: self.send_error(404, 'Not Found')


@pytest.fixture
def server():
    "A loopback HTTP server in a thread; base URL like http://127.0.0.1:PORT."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.daemon_threads, srv.requests = True, []
    t = threading.Thread(target=srv.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    t.start()
    watchdog = threading.Timer(SERVER_LIFETIME, srv.shutdown); watchdog.daemon = True; watchdog.start()
    try: yield srv, f'http://127.0.0.1:{srv.server_address[1]}'
    finally:
        watchdog.cancel(); srv.shutdown(); srv.server_close(); t.join(5)


@pytest.fixture
def env(tmp_path, monkeypatch):
    "Isolated registry with a test asset 'blob', and DFE_ASSETS / DFE_CACHE / shared folder in tmp dirs."
    monkeypatch.setattr(A, 'ASSETS', dict(A.ASSETS))
    monkeypatch.setattr(A, '_VERIFIED', {})
    for k in ('DFE_ASSETS', 'DFE_ASSET_BASE_URL'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('DFE_CACHE', str(tmp_path/'cache'))
    shared = tmp_path/'shared'
    monkeypatch.setattr(A, 'shared_dir', lambda: shared)
    A.register_asset('blob', 'blob.bin', BLOB_SHA, url='http://127.0.0.1:9/blob.bin', size=len(BLOB), licence='CC0')
    return dict(tmp=tmp_path, mine=tmp_path/'mine', cache=tmp_path/'cache'/'assets', shared=shared/'assets')


def _put(folder:Path, data:bytes=BLOB) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder/'blob.bin').write_bytes(data)
    return folder/'blob.bin'


def _listing(d:Path) -> list: return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ---- downloads

def test_fetch_good(server, env):
    srv, base = server
    p = A.fetch_asset('blob', url=f'{base}/good.bin', progress=False)
    assert p == env['cache']/'blob.bin' and p.read_bytes() == BLOB
    assert _listing(env['cache']) == ['blob.bin']  # no temporary left behind
    assert A.asset_path('blob') == p
    # already verified at the destination: no second request
    n = len(srv.requests)
    assert A.fetch_asset('blob', url=f'{base}/good.bin', progress=False) == p and len(srv.requests) == n
    A.fetch_asset('blob', url=f'{base}/good.bin', progress=False, force=True)
    assert len(srv.requests) == n + 1


def test_fetch_mirror_env(server, env, monkeypatch):
    srv, base = server
    monkeypatch.setenv('DFE_ASSET_BASE_URL', base + '/mirror/')
    assert A.asset_url('blob') == f'{base}/mirror/blob.bin'
    A.fetch_asset('blob', progress=False)
    assert srv.requests[-1] == '/mirror/blob.bin'


@pytest.mark.parametrize('path,expect', [('bad.bin', 'checksum mismatch'), ('missing.bin', 'HTTP 404'),
                                         ('cut.bin', 'cut off: got 34,133 of 102,400 bytes')])
def test_fetch_failures_leave_nothing(server, env, path, expect):
    _, base = server
    dest = env['tmp']/'dl'
    with pytest.raises(AssetError) as e: A.fetch_asset('blob', dest, url=f'{base}/{path}', progress=False)
    assert expect in str(e.value) and f'{base}/{path}' in str(e.value) and 'Nothing was saved' in str(e.value)
    assert _listing(dest) == []


def test_failed_download_keeps_earlier_file(server, env):
    _, base = server
    old = _put(env['tmp']/'dl', b'old content')
    with pytest.raises(AssetError, match='checksum mismatch'):
        A.fetch_asset('blob', old.parent, url=f'{base}/bad.bin', progress=False, force=True)
    assert old.read_bytes() == b'old content' and _listing(old.parent) == ['blob.bin']


def test_fetch_connection_refused(env):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()  # a port nobody listens on
    with pytest.raises(AssetError, match='could not connect to http://127.0.0.1:.*refused'):
        A.fetch_asset('blob', env['tmp']/'dl', url=f'http://127.0.0.1:{port}/blob.bin', progress=False)
    assert _listing(env['tmp']/'dl') == []


def test_fetch_timeout(server, env):
    _, base = server
    with pytest.raises(AssetError, match='timed out'):
        A.fetch_asset('blob', env['tmp']/'dl', url=f'{base}/slow.bin', timeout=0.3, progress=False)
    assert _listing(env['tmp']/'dl') == []


def test_fetch_size_mismatch_before_download(server, env):
    _, base = server
    A.register_asset('blob', 'blob.bin', BLOB_SHA, size=len(BLOB) + 1, replace=True)
    with pytest.raises(AssetError, match='wrong file'):
        A.fetch_asset('blob', env['tmp']/'dl', url=f'{base}/good.bin', progress=False)


def test_fetch_no_url(env):
    A.register_asset('local_only', 'w.pt', BLOB_SHA, repo_path='dfe/weights/w.pt')
    with pytest.raises(AssetError, match='has no download URL'): A.fetch_asset('local_only', env['tmp'])


# ---- lookup

def test_lookup_order(env, monkeypatch):
    monkeypatch.setenv('DFE_ASSETS', str(env['mine']))
    with pytest.raises(AssetError) as e: A.asset_path('blob')
    msg = str(e.value)
    for s in ['blob.bin not found', str(env['mine']/'blob.bin'), str(env['cache']/'blob.bin'), str(env['shared']/'blob.bin'),
              'dfe assets fetch blob', 'DFE_ASSETS']:
        assert s in msg
    assert msg.index(str(env['mine'])) < msg.index(str(env['cache'])) < msg.index(str(env['shared']))
    for folder in ('shared', 'cache', 'mine'):  # each new copy comes earlier in the order and wins
        _put(env[folder])
        assert A.asset_path('blob') == env[folder]/'blob.bin'


def test_corrupt_first_copy_raises(env, monkeypatch):
    "A present but corrupt file raises; dfe does not silently fall back to a later good copy."
    monkeypatch.setenv('DFE_ASSETS', str(env['mine']))
    _put(env['cache']); bad = _put(env['mine'], BLOB[:-1] + b'!')
    with pytest.raises(AssetError) as e: A.asset_path('blob')
    assert str(bad) in str(e.value) and BLOB_SHA in str(e.value) and 'does not fall back' in str(e.value)
    assert A.check_assets(['blob'])[0]['status'] == 'corrupt'
    _put(env['mine'], BLOB[:10])  # wrong size is caught without hashing, even with verify=False
    with pytest.raises(AssetError, match='has 10 bytes'): A.asset_path('blob', verify=False)
    assert A.check_assets(['blob'], verify=False)[0]['status'] == 'corrupt'


def test_corrupt_cache_copy_refetched(server, env, capsys):
    _, base = server
    A.register_asset('blob', 'blob.bin', BLOB_SHA, url=f'{base}/good.bin', size=len(BLOB), replace=True)
    _put(env['cache'], BLOB[:-1] + b'!')
    with pytest.raises(AssetError, match='--force'): A.asset_path('blob')
    assert A.assets_fetch(['blob']) == 0
    assert A.asset_path('blob') == env['cache']/'blob.bin'


def test_repo_path_location(env, monkeypatch):
    root = env['tmp']/'pkgroot'
    monkeypatch.setattr(A, '_package_root', lambda: root)
    A.register_asset('shipped', 'blob.bin', BLOB_SHA, repo_path='dfe/weights/blob.bin')
    assert [l for l, _ in A.asset_locations('shipped')] == ['shipped with dfe', 'user cache', 'shared folder']
    with pytest.raises(AssetError, match='should ship with dfe'): A.asset_path('shipped')
    _put(root/'dfe'/'weights')
    assert A.asset_path('shipped') == root/'dfe'/'weights'/'blob.bin'


def test_verification_is_remembered(env, monkeypatch):
    p = _put(env['cache'])
    calls = []
    real = A.sha256_file
    monkeypatch.setattr(A, 'sha256_file', lambda f: calls.append(f) or real(f))
    for _ in range(3): A.asset_path('blob')
    assert len(calls) == 1
    st = p.stat(); os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed again
    A.asset_path('blob')
    assert len(calls) == 2


# ---- registry

def test_register_assets_json(env, tmp_path):
    f = tmp_path/'reg.json'
    f.write_text('{"assets": [{"name": "j1", "filename": "j1.bin", "sha256": "%s", "size": 3, "licence": "MIT"}]}' % BLOB_SHA)
    (a,) = A.register_assets_json(f)
    assert A.get_asset('j1') == a and a.size == 3
    f.write_text('[{"name": "j2", "filename": "j2.bin", "sha256": "%s", "colour": "red"}]' % BLOB_SHA)
    with pytest.raises(A.DfeError, match='unknown fields'): A.register_assets_json(f)


# ---- commands

def test_commands(server, env, monkeypatch, capsys):
    _, base = server
    monkeypatch.setenv('DFE_ASSET_BASE_URL', base)
    assert A.assets_check(['blob']) == 1
    assert 'dfe assets fetch blob' in capsys.readouterr().out
    assert A.assets_fetch(['blob']) == 0
    assert A.assets_check(['blob']) == 0
    assert A.assets_fetch(['blob', 'nope']) == 1
    assert "unknown asset" in capsys.readouterr().err
    monkeypatch.setenv('DFE_ASSET_BASE_URL', base + '/nothing-here')
    assert A.assets_fetch(['blob'], dest_dir=str(env['tmp']/'elsewhere')) == 1
    assert 'HTTP 404' in capsys.readouterr().err


# ---- the real shared assets

def test_shared_assets_verified(tmp_path, monkeypatch):
    monkeypatch.delenv('DFE_ASSETS', raising=False)
    monkeypatch.setenv('DFE_CACHE', str(tmp_path))
    monkeypatch.setattr(A, '_VERIFIED', {})
    from dfe.core import shared_dir
    rows = {r['name']: r for r in A.check_assets(['ict_facekit', 'face_landmarker'])}
    for name, fn in [('ict_facekit', 'ict_facekit.npz'), ('face_landmarker', 'face_landmarker.task')]:
        assert rows[name]['status'] == 'verified' and rows[name]['path'] == str(shared_dir()/'assets'/fn)
        assert A.asset_path(name) == shared_dir()/'assets'/fn
    assert A.assets_check(['ict_facekit', 'face_landmarker']) == 0


def test_cli_wiring(tmp_path, monkeypatch):
    monkeypatch.delenv('DFE_ASSETS', raising=False)
    monkeypatch.setenv('DFE_CACHE', str(tmp_path))
    from dfe.cli import main
    assert main(['assets', 'check']) == 0
