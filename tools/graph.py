"""Draw the computation graph microgpt builds for one position of a tiny GPT: every Value with the operation
that made it, its value and its gradient, the parameters gathered into one box per matrix.

The model is small enough to read: three tokens (a, b and BOS), n_embd 4, one head, one layer; the position
is the first of the document "ab", where the model reads BOS and is scored on "a". The graph is the forward
pass of that position (embedding, RMSNorm, attention over one key, the MLP, lm_head) ending in its
cross-entropy, after backward(). Graphviz DOT is plain text, written with the standard library; where
Graphviz's `dot` is installed, it is rendered to SVG beside it.

Usage: python3 tools/graph.py [OUT.dot]    (default docs/graph.dot; make graph)
"""
import os
import random
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

import inside  # noqa: E402  (after the path is set)
import microgpt  # noqa: E402


def tiny_graph():
    """The DOT text of the graph of the first position of "ab" in a tiny GPT, after backward()."""
    tokenizer = microgpt.Tokenizer.from_docs(["ab", "ba"])
    gpt = microgpt.GPT(tokenizer.vocab_size, 4, 1, 1, 4, random.Random(0))
    tokens = tokenizer.encode("ab")
    logits = microgpt.document_logits(gpt, tokens[:1])[0]            # position 0 reads BOS
    loss = microgpt.cross_entropy(logits, tokens[1])                 # and is scored on "a"
    loss.backward()
    return inside.graph_dot(loss, gpt)


def render(dot_path, fmt="svg"):
    """Render dot_path with Graphviz to the same name with .fmt; its path, or None without Graphviz."""
    if shutil.which("dot") is None:
        return None
    out = os.path.splitext(dot_path)[0] + "." + fmt
    subprocess.run(["dot", f"-T{fmt}", dot_path, "-o", out], check=True)
    return out


def refused(out):
    """Why the graph may not be written to `out` (one line), or None: a folder that does not exist, a folder,
    a link, or a file that is not a graph this script wrote (never a user's own)."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        return f"{out}: folder {folder} does not exist"
    if os.path.isdir(out):
        return f"{out} is a folder; give a file name"
    if os.path.islink(out):
        return f"{out} is a link; give the graph's own file name"
    if os.path.exists(out):
        with open(out, "rb") as f:
            if not f.read(64).startswith(b"digraph microgpt"):
                return f"{out} is there and is not a graph this script wrote; remove it or give another name"
    return None


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.join(HERE, "docs", "graph.dot")
    why = refused(out)
    if why:
        print(f"graph: error: {why}", file=sys.stderr)
        return 2
    with open(out, "w", encoding="utf-8") as f:
        f.write(tiny_graph())
    picture = render(out)
    print(f"wrote {out}" + (f" and {picture}" if picture else " (Graphviz's dot is not installed: no picture; "
                                                             "apt-get install graphviz to draw it)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
