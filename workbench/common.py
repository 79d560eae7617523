"""What every room of the workbench uses: the exceptions a run ends with (each an exit status, in
program.exit_status), and the small helpers that say things (shown, counted, format_seconds) or flatten weights."""
import os
import signal


class DataError(Exception):
    """Bad input the user can fix (a missing file, an impossible option): main() prints the message on
    one line and exits with status 2."""


class OutputError(Exception):
    """An output could not be written (a full disk, a closed terminal): main() prints the message on one
    line and exits with status 74, after the run saved what it could. `path`: the file, if one."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class Stopped(Exception):
    """SIGTERM or SIGHUP outside training (inside, they stop it after the step, as Ctrl-C does)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def shown(text, limit=120):
    """User input as a message quotes it: as it is if printable and at most `limit` characters, else with
    every unprintable character escaped (a terminal escape never reaches the terminal) and cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def format_seconds(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def flat(weights):
    """{name: rows} -> one list of floats, in order."""
    return [x for rows in weights.values() for row in rows for x in row]


def counted(n, one, many=None):
    """'1 step', '2 steps': a count and its noun (`one`; `many`, else one + 's'), agreed in number."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def scored(docs, block_size):
    """Each document cut to the block_size + 1 characters a model of that block_size may read: the same
    positions and targets (microgpt.n_predicted; a text window of --text is that long, a document needs a
    character less as BOS comes first), and a document of 200 MB is not encoded whole to be cut after."""
    return [doc[:block_size + 1] for doc in docs]


def positions_read(docs, settings):
    """The most positions a document is read at: block_size with --text (every window is whole), else the
    longest document's characters and its BOS, cut to block_size. What a graph's memory grows with."""
    if settings["text"]:
        return settings["block_size"]
    return min(settings["block_size"], max(map(len, docs), default=0) + 1)


def physical_memory():
    """Bytes of memory this process may use: the machine's, or less where a limit says so (the address space
    of `ulimit -v`; a container's cgroup memory.max) or where other processes hold some now (Linux's
    MemAvailable); None where the system says nothing."""
    amounts = []
    try:
        with open("/proc/meminfo") as f:
            free = [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]    # (in kB)
        amounts += [amount for amount in free if amount > 0]        # (0: an odd account, not a limit)
    except (OSError, ValueError, IndexError):
        pass
    try:
        amounts.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource                             # (not on Windows)
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            amounts.append(soft)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            amounts.append(int(limit))
    except OSError:
        pass
    return min(amounts) if amounts else None
