"""Files, read whole and checked, written whole or not at all: the data file, what an output may replace, a
claim that stops a second run writing the same file, and the formats of the metrics rows a run logs."""
import hashlib
import json
import os
import stat
import unicodedata

try:
    import fcntl                        # a lock on each output while a run writes it (POSIX)
except ImportError:
    fcntl = None

import microgpt
from .common import DataError, OutputError, counted, physical_memory, shown


# The metrics rows a run keeps (in its checkpoint) and logs (in its CSV), field by field.
TRAIN_FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_sec", "elapsed_s", "update_ratio", "clipped")
EVAL_FIELDS = ("step", "train_loss", "val_loss", "seconds")
LOG_COLUMNS = ("kind",) + TRAIN_FIELDS + ("grad_clip", "train_loss", "val_loss", "val_ppl")   # the CSV's header

MAX_BYTES = 256 * 2 ** 20             # a file larger than this is not a list of names (or a checkpoint of one)


def read_text(path, what, fix, room=None):
    """The whole of a UTF-8 text file as a string: a byte-order mark dropped, line ends as \\n. `what` names
    the file in errors ("data file") and `fix` says what to do instead. Raises DataError if it is missing,
    a folder, not a regular file (a pipe or a device would block or never end), a file that does not end
    (/proc/kmsg is "regular"; read without blocking, it says so), over MAX_BYTES, unreadable or not UTF-8.
    room(bytes, where), if given, checks the bytes before they are made into text (data_room)."""
    where = f"{what} {shown(path)}"
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{where} not found; {fix}")
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror}; {fix}")
    if stat.S_ISDIR(kind):
        raise DataError(f"{where} is a folder; {fix}")
    if not stat.S_ISREG(kind):
        raise DataError(f"{where} is not a regular file (a pipe or a device?); {fix}")
    data = read_bytes(path, where, fix)
    if room:
        room(data, where)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{where} is not UTF-8 text (byte {e.start}); {fix}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_bytes(path, where, fix):
    """The bytes of a regular file, read without ever blocking: DataError if it does not end or is too big."""
    chunks, size = [], 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise DataError(f"{where} is over {MAX_BYTES // 2 ** 20} MiB, too big to be read whole; {fix}")
        finally:
            os.close(fd)
    except BlockingIOError:
        raise DataError(f"{where} has no end to read to (a stream of the system, not a file); {fix}")
    except OSError as e:
        raise DataError(f"cannot read {where}: {e.strerror}; {fix}")


HIDDEN_CONTROLS = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")  # bidi, BOM


def printable(c):
    """Whether character c may be a token: not a control character (tab aside), a surrogate, a line or
    paragraph separator, a bidirectional control or a byte-order mark, so that no sample can write a
    terminal escape, break a line or turn the text around it."""
    return c == "\t" or (unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp") and c not in HIDDEN_CONTROLS)


def read_data(path, fix, room):
    """The whole text of the data file at `path` (read_text, its bytes checked by room before), and its SHA-256
    (hex). Raises DataError for a character that is not printable() but a newline, naming its line."""
    text = read_text(path, "data file", fix, room)
    bad = sorted(c for c in set(text) - {"\n"} if not printable(c))
    if bad:
        line = text[:text.index(bad[0])].count("\n") + 1
        raise DataError(f"data file {shown(path)} line {line} has {shown(bad[0])}, a control character; microgpt "
                        f"learns printable text: remove it")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_docs(path):
    """microgpt.documents() of the file at `path`, at least one, and the SHA-256 of its text (hex). Raises
    DataError if there is none, a character is not printable(), or the file cannot be read as text."""
    text, sha256 = read_data(path, "pass --data a UTF-8 text file, one document per line", data_room)
    docs = microgpt.documents(text)
    if not docs:
        raise DataError(f"data file {shown(path)} has no non-blank line; put one document per line")
    return docs, sha256


def read_stream(path):
    """The text of the file at `path` as one stream (--text): line ends made \\n, a byte-order mark dropped,
    nothing else changed; and its SHA-256 (hex), as read_docs() gives it. Raises DataError if it has fewer
    than 2 characters, a character that is not printable() but a newline, or cannot be read as text."""
    text, sha256 = read_data(path, "pass --data a UTF-8 text file", stream_room)
    if len(text) < 2:
        raise DataError(f"data file {shown(path)} has {counted(len(text), 'character')}; a stream to learn from needs "
                        f"more")
    return text, sha256


def data_memory(size, lines, stream=False):
    """Bytes that making the documents of a data file of `size` bytes in `lines` lines takes at its peak,
    counted before it is done: the text, its copies as line ends are made one, and each line a string.
    Measured with tracemalloc: up to 3 bytes a byte of ASCII text, 6 of text far from ASCII (4 bytes a
    character), and 80 a line. As one stream (--text), 12 a byte: the baselines read it in windows of
    block_size + 1 characters, each a string (65 MB at the peak for a text of 5.4 MB)."""
    return 12 * size if stream else 6 * size + 100 * lines


def data_room(data, where, stream=False):
    """Raise DataError if the documents of a data file (its bytes) would not fit in this process's memory."""
    lines = data.count(b"\n") + 1
    need, have = data_memory(len(data), lines, stream), physical_memory()
    if have and need > have:
        raise DataError(f"{where} ({len(data) / 1e6:,.0f} MB in {lines:,} lines) needs about {need / 1e9:,.1f} GB "
                        f"of memory to be made into {'a stream' if stream else 'documents'}; this process may use "
                        f"{have / 1e9:,.1f} GB; train on a part of it")


def stream_room(data, where):
    """data_room for a data file read as one stream (--text)."""
    data_room(data, where, stream=True)


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def hidden(path, suffix):
    """The hidden file beside `path` with this suffix: .NAME.tmp (a save's temporary), .NAME.lock (the claim)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{suffix}")


def best_path(save):
    """Where a run saving to `save` keeps its best model by validation loss: model.json -> model.best.json."""
    if not save:
        return None
    root, extension = os.path.splitext(save)
    return f"{root}.best{extension}"


def write_atomically(path, text):
    """Write text to path through a temporary file beside it and a rename, so that a crash at any moment
    leaves either the old file or the new one, never half of one. The temporary file has one name per
    path, so a save killed half-way leaves nothing that the next save does not remove; it is made anew
    each time (O_EXCL), so a link planted at its name is removed, never followed. A run writes only the
    files it claimed (Claim), so no other run saves to the same path meanwhile. Raises OutputError if
    it cannot."""
    tmp = hidden(path, "tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)                                  # a killed save's leftover, or a planted link
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if os.path.isfile(path):
                os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))     # the file replaced keeps its mode
            f.write(text)
            f.flush()
            os.fsync(f.fileno())                            # the bytes are on disk before the rename
        os.replace(tmp, path)                               # atomic: readers see the old file or the new
    except BaseException as e:
        try:
            if os.path.lexists(tmp) and not os.path.isdir(tmp):
                os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {shown(path)}: {e.strerror}", path)
        raise


def check_output(path, option, kind, inputs):
    """Raise DataError now, before any work, unless `path` can take this output: its folder exists, it is
    not an input of the run (`inputs`, {path: what it is}), and what is there now, if anything, is a
    regular file of the same kind (`kind`: "checkpoint" or "log") or empty. The one place that decides
    what an output may replace: a checkpoint a newer one of the run, a log a log, nothing else."""
    folder, where = os.path.dirname(os.path.abspath(path)), f"{option} {shown(path)}"
    if path.endswith(os.sep):
        raise DataError(f"{where} names a folder; give a file name")
    if not os.path.isdir(folder):
        raise DataError(f"{where}: folder {shown(folder)} does not exist")
    for other, what in inputs.items():
        if same_file(path, other):
            raise DataError(f"{where} is {what}; an output never replaces an input: give another file name")
    if os.path.isdir(path):
        raise DataError(f"{where} is a folder; give a file name")
    if os.path.lexists(path):
        if kind == "log" and os.path.islink(path):
            raise DataError(f"{where} is a link; give the log's own file name (a log never writes through a link)")
        if not os.path.isfile(path):
            raise DataError(f"{where} is not a regular file (a pipe or a device?); give a file name")
        if not is_kind(path, kind):
            raise DataError(f"{where} is a file that is not a microgpt {kind}; a {kind} replaces only a {kind}: "
                            f"give a new file name")
    tmp = hidden(path, "tmp")
    if os.path.lexists(tmp) and not os.path.islink(tmp) and not leftover(tmp):
        raise DataError(f"{where}: {shown(tmp)}, the name its saves are written under, is there and is not a "
                        f"leftover of one; remove it or give another file name")


def leftover(tmp):
    """Whether the file at a save's temporary name is what a killed save leaves: a regular file of one link,
    empty or the start of a checkpoint (a link there is removed, never followed, whatever it points to)."""
    info = os.stat(tmp, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        return False
    start = b'{"format": "microgpt checkpoint'              # how every checkpoint's text begins
    with open(tmp, "rb") as f:
        begins = f.read(len(start))                         # as much of it as the killed save wrote, or all
    return start.startswith(begins)


def same_file(a, b):
    """Whether two paths name one file: the same path once links are resolved, or the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:                                         # one of them does not exist (yet)
        return False


def is_kind(path, kind):
    """Whether the file at path is empty, or a microgpt checkpoint (JSON with its "format", of any version)
    or a microgpt log (its header row)."""
    try:
        if os.path.getsize(path) == 0:
            return True
        if kind == "log":
            with open(path, "rb") as f:
                return f.readline().decode("utf-8", "replace").strip() == ",".join(LOG_COLUMNS)
        state = json.loads(read_text(path, "checkpoint", ""))
    except (OSError, ValueError, RecursionError, DataError):
        return False
    return type(state) is dict and str(state.get("format", "")).startswith("microgpt checkpoint")


class Claim:
    """A run's hold on one output file while it runs: an exclusive lock (fcntl.flock, where the system has
    it) on the hidden file .NAME.lock beside it, so that a second run writing the same file stops before
    any work with a line that names the clash, instead of the two saves renaming each other's files away.
    The lock file is made anew, or is a lock of microgpt's already (a regular file of one link holding a
    process number, left by a run that was killed): anything else at its name is refused, never written.
    A run that is killed loses its lock with it; release() removes the lock file."""

    def __init__(self, path, option):
        self.path, where = hidden(path, "lock"), f"{option} {shown(path)}"
        for _ in range(3):                                  # a lock file a finishing run removes: take the next
            self.fd = self.open(where)
            if fcntl is None or self.lock(where):
                return
        raise DataError(f"{where}: cannot hold {shown(self.path)}; give another file name")

    def open(self, where):
        """The lock file's descriptor: made anew, or the one a killed run left."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
        except FileExistsError:
            pass
        except OSError as e:
            raise DataError(f"{where}: cannot write in {shown(os.path.dirname(self.path))} ({e.strerror})")
        foreign = DataError(f"{where}: {shown(self.path)} is there and is not a lock of microgpt's; remove it or "
                            f"give another file name")
        try:
            fd = os.open(self.path, os.O_RDWR | NOFOLLOW)   # a link is refused here (ELOOP)
        except OSError:
            raise foreign
        info, held = os.fstat(fd), os.read(fd, 32).strip()
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or (held and not held.isdigit()):
            os.close(fd)
            raise foreign
        return fd

    def lock(self, where):
        """Take the lock; True if it is still the file at the path (else another run replaced it: try again)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.lseek(self.fd, 0, os.SEEK_SET)
            other = os.read(self.fd, 32).decode("ascii", "replace").strip() or "another"
            os.close(self.fd)
            raise DataError(f"{where}: process {shown(other)} is writing it now (it holds {shown(self.path)}); "
                            f"wait for it to end or give another file name")
        try:
            if os.fstat(self.fd).st_ino != os.stat(self.path, follow_symlinks=False).st_ino:
                os.close(self.fd)
                return False
        except OSError:
            os.close(self.fd)
            return False
        try:                                                # who holds it, for the line of a second run
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        except OSError:                                     # (a full disk: the lock holds without it)
            pass
        return True

    def release(self):
        """Let the file go: the lock file removed and closed (once; a second call does nothing)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
