"""The side-by-side reading page (tools/make_docs.py) and the numbers the annotations quote."""
import html.parser
import importlib.util
import math
import os
import random
import re
import unittest

from support import NAMES, ROOT, SCRIPT, microgpt

spec = importlib.util.spec_from_file_location("make_docs", os.path.join(ROOT, "tools", "make_docs.py"))
make_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docs)
spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "bench", "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

RULE = re.compile(r"^# ?([-=])\1{20,}\s*$")


class PageRows(html.parser.HTMLParser):
    """Collects, from the page, every table row as (note text, code lines) and every section heading."""

    def __init__(self):
        super().__init__()
        self.rows, self.headings, self.tags = [], [], []
        self.cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append({"note": "", "code": ""})
        elif tag == "td":
            self.cell = "note" if attrs.get("class") == "note" else None
        elif tag == "pre":
            self.cell = "code"
        elif tag in ("h2", "summary"):
            self.headings.append("")
            self.cell = "heading"
        elif tag == "span" and attrs.get("class") == "ln":
            self.cell = "line number"

    def handle_endtag(self, tag):
        if tag == "p" and self.cell == "note":
            self.rows[-1]["note"] += " "                    # paragraphs are separate sentences
        if tag == "span" and self.cell == "line number":
            self.cell = "code"
        elif tag in ("td", "pre", "h2", "summary"):
            self.cell = None

    def handle_data(self, data):
        if self.cell == "heading":
            self.headings[-1] += data
        elif self.cell == "note":
            self.rows[-1]["note"] += data
        elif self.cell == "code":
            self.rows[-1]["code"] += data


def normalise(text):
    return " ".join(text.split())


def source_lines():
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read().splitlines()


def is_comment(line):
    return line.strip().startswith("#") and not line.startswith("#!")


class TestReadingPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SCRIPT, encoding="utf-8") as f:
            cls.page = make_docs.render(f.read())
        parser = PageRows()
        parser.feed(cls.page)
        cls.rows, cls.headings = parser.rows, parser.headings

    def test_every_code_line_appears_once_and_in_order(self):
        on_page = [line for row in self.rows for line in row["code"].split("\n") if line.strip()]
        in_file = [line for line in source_lines() if line.strip() and not is_comment(line)]
        self.assertEqual(len(on_page), len(in_file))
        self.assertEqual(on_page, in_file)

    def test_every_annotation_sits_beside_the_code_that_follows_it(self):
        lines = source_lines()
        headings, checked, i = [], 0, 0
        while i < len(lines):
            if not is_comment(lines[i]):
                i += 1
                continue
            start = i
            while i < len(lines) and is_comment(lines[i]):
                i += 1
            run = lines[start:i]
            if RULE.match(run[0].strip()):
                headings.append(make_docs.comment_text(run[1]))
                run = run[2:]                               # the rule and the heading are not the note
            text = normalise(" ".join(make_docs.comment_text(line) for line in run)).replace("`", "")
            if not text:
                continue
            following = next(line for line in lines[i:] if line.strip())
            matches = [row for row in self.rows if normalise(row["note"]) == text]
            self.assertEqual(len(matches), 1, f"annotation at line {start + 1}: {text[:60]}")
            self.assertEqual(matches[0]["code"].split("\n")[0], following, f"annotation at line {start + 1}")
            checked += 1
        self.assertGreaterEqual(checked, 40)                 # 43 annotation blocks when written
        self.assertEqual(self.headings, ["Preamble"] + headings)

    def test_sections_in_order_with_the_tooling_folded_away(self):
        titles = [h.split(":")[0] for h in self.headings]
        self.assertEqual(titles, ["Preamble", "1. Dataset", "2. Tokenizer", "3. Autograd", "4. Model", "5. Loss",
                                  "6. Optimizer", "7. Training", "8. Sampling", "Tooling"])
        self.assertRegex(self.page, r'<details id="s9"><summary>Tooling')
        for n in range(10):
            self.assertIn(f'<a href="#s{n}">', self.page)

    def test_self_contained(self):
        self.assertNotIn("<script", self.page)
        self.assertNotRegex(self.page, r'(src|href)="(https?:)?//')
        self.assertIn("<style>", self.page)


class TestConceptsMap(unittest.TestCase):
    def test_every_place_the_readme_points_to_exists(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        table = readme[readme.index("### Where each idea is explained"):readme.index("## Playing with it")]
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
        self.assertGreaterEqual(len(rows), 24)
        headings = [make_docs.comment_text(line) for line in source_lines() if re.match(r"# \d\. |# Tooling", line)]
        for row in rows:
            where = row.split("|")[2]
            for section in re.findall(r"(\d\. \w+|Tooling)", where):
                self.assertTrue(any(h.startswith(section) for h in headings), f"no section {section}")
            for name in re.findall(r"`([\w.]+)`", where):
                obj = microgpt
                for part in name.split("."):
                    self.assertTrue(hasattr(obj, part), f"README points to {name}, which is not in microgpt.py")
                    obj = getattr(obj, part)


class TestQuotedNumbers(unittest.TestCase):
    """The numbers the annotations quote, recomputed with the defaults."""

    def test_vocabulary_parameters_and_baseline(self):
        docs = microgpt.load_docs(NAMES)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = microgpt.GPT(tokenizer.vocab_size)
        text = "\n".join(source_lines())
        self.assertEqual((len(docs), docs[0], tokenizer.vocab_size, tokenizer.BOS), (29910, "emma", 27, 26))
        self.assertIn("names.txt: 29,910 names, 'emma' first", text)
        self.assertIn("a-z plus BOS: 27 tokens", text)
        self.assertEqual(len(gpt.params), 4064)
        self.assertIn("= 4,064 numbers with the defaults", text)
        self.assertIn(f"ln 27 = {math.log(27):.2f} for", text)
        self.assertIn("'emma' -> [BOS, 4, 12, 12, 0, BOS]", text)
        self.assertEqual(tokenizer.encode("emma")[1:-1], [4, 12, 12, 0])

    def test_graph_sizes_quoted_for_the_fused_nodes(self):
        import atomic_reference
        docs = microgpt.load_docs(NAMES)
        random.Random(42).shuffle(docs)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = microgpt.GPT(tokenizer.vocab_size, block_size=16, rng=random.Random(1))
        tokens = tokenizer.encode(docs[0])
        sizes = [bench.graph_size(loss_fn(gpt, tokens), gpt.params)[0]       # nodes, as make bench counts
                 for loss_fn in (atomic_reference.document_loss, microgpt.document_loss)]
        self.assertEqual((docs[0], sizes), ("emet", [39443, 1878]))
        self.assertIn("that is 39,443 nodes instead of 1,878", "\n".join(source_lines()))

    def test_the_trace_table_in_document_losses(self):
        out = []
        args = microgpt.parse_args(["--explain", "emma"])
        status = microgpt.run(args, log=out.append)
        self.assertEqual(status, 0)
        traced = [float(line.split("|")[4]) for line in out if re.match(r" +\d \|", line)]     # the loss column
        doc = microgpt.document_losses.__doc__
        quoted = [float(x) for x in re.findall(r"^ +\d  \S+ +\S+ +(\d\.\d{4})", doc, re.M)]
        self.assertEqual(len(quoted), 5)
        self.assertEqual(quoted, [round(x, 4) for x in traced])
        mean = float(re.search(r"mean (\d\.\d{4})", doc).group(1))
        self.assertEqual(mean, round(sum(traced) / 5, 4))
        self.assertIn(f"ln 27 = {math.log(27):.4f}", doc)


if __name__ == "__main__":
    unittest.main()
