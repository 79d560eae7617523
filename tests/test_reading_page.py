"""The reading page of microgpt.py (tools/make_docs.py) and the numbers the annotations quote."""
import ast
import html.parser
import importlib.util
import math
import os
import random
import re
import shutil
import unittest

from support import document_loss, NAMES, ROOT, SCRIPT, gpt as make_gpt, microgpt, replaced, workbench
import reference.atomic as atomic_reference  # (support puts the project on the path)
from reference import classic, graph_size

spec = importlib.util.spec_from_file_location("make_docs", os.path.join(ROOT, "tools", "make_docs.py"))
make_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docs)

RULE = re.compile(r"^# ?([-=])\1{20,}\s*$")


class Page(html.parser.HTMLParser):
    """Reads the reading page back: every block as {note, code, first line}, the section headings, every id,
    every link of the navigation, and the text of the measured figures."""

    def __init__(self):
        super().__init__()
        self.blocks, self.headings, self.ids, self.nav_links, self.figures = [], [], set(), [], {}
        self.where, self.depth, self.in_nav = None, [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        css = attrs.get("class", "")
        if tag == "nav":
            self.in_nav = True
        if tag == "a" and self.in_nav:
            self.nav_links.append(attrs["href"])
        if tag == "div" and css == "block":
            self.blocks.append({"note": "", "code": ""})
        elif tag == "div" and css in ("note", "code"):
            self.where = css
        elif tag == "span" and css == "ln":
            self.where = "skip"
        elif tag in ("h2", "summary") and not self.in_nav:
            self.headings.append("")
            self.where = "heading"
        elif tag == "figure":
            self.figures[attrs["id"]] = ""
            self.where = "figure"
        elif tag == "p" and self.where == "note" and self.blocks:
            self.blocks[-1]["note"] += " "

    def handle_endtag(self, tag):
        if tag == "nav":
            self.in_nav = False
        if tag == "span" and self.where == "skip":
            self.where = "code"
        elif tag in ("h2", "summary") and self.where == "heading":
            self.where = None
        elif tag == "figure":
            self.where = None
        elif tag in ("td", "th") and self.where == "figure":
            self.figures[list(self.figures)[-1]] += " | "

    def handle_data(self, data):
        if self.where == "heading":
            self.headings[-1] += data
        elif self.where in ("note", "code"):
            self.blocks[-1][self.where] += data
        elif self.where == "figure":
            self.figures[list(self.figures)[-1]] += data


def normalise(text):
    return " ".join(text.split())


def source_lines():
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read().splitlines()


def is_comment(line):
    return line.strip().startswith("#") and not line.startswith("#!")


def docstrings():
    """{line of the def or class: (qualified name, docstring, its line span)}, and the module docstring's
    span; found here with ast, independently of make_docs."""
    tree = ast.parse("\n".join(source_lines()))
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(child)
                found[child.lineno] = (prefix + child.name, doc,
                                       (child.body[0].lineno, child.body[0].end_lineno) if doc else None,
                                       "cls" if isinstance(child, ast.ClassDef) else "fn")
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return found, (tree.body[0].lineno, tree.body[0].end_lineno)


class TestReadingPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SCRIPT, encoding="utf-8") as f, open(os.path.join(ROOT, "README.md"), encoding="utf-8") as g:
            cls.source, cls.readme = f.read(), g.read()
        cls.facts = make_docs.measure(microgpt)
        cls.page = make_docs.render(cls.source, cls.readme, cls.facts)
        cls.parsed = Page()
        cls.parsed.feed(cls.page)
        cls.blocks = cls.parsed.blocks

    def test_every_code_line_appears_once_and_in_order(self):
        defs, module = docstrings()
        in_docstring = {n for _, doc, span, _ in defs.values() if doc for n in range(span[0], span[1] + 1)}
        in_docstring |= set(range(module[0], module[1] + 1))
        on_page = [line for block in self.blocks for line in block["code"].split("\n") if line.strip()]
        in_file = [line for n, line in enumerate(source_lines(), start=1)
                   if line.strip() and not is_comment(line) and n not in in_docstring]
        self.assertEqual(len(on_page), len(in_file))
        self.assertEqual(on_page, in_file)

    def test_every_docstring_sits_in_the_prose_beside_its_code(self):
        """The block whose code holds the def line has the docstring in its prose: its name as the label,
        and its words (of five letters or more, which typesetting leaves alone) in order."""
        defs, _ = docstrings()
        lines = source_lines()
        checked = 0
        for n, (name, doc, _, _) in defs.items():
            if not doc:
                continue
            block = next(b for b in self.blocks if lines[n - 1] in b["code"].split("\n"))
            note = block["note"]
            self.assertIn(name, note, f"{name}: not beside line {n}")
            words, found = re.findall(r"[A-Za-z]{5,}", doc), iter(re.findall(r"[A-Za-z]{5,}", note))
            self.assertTrue(all(word in found for word in words), f"{name}: its docstring is not all in the prose")
            checked += 1
        self.assertGreaterEqual(checked, 40)            # every docstring of microgpt.py, as it stands
        module = microgpt.__doc__.split("\n")[0]
        self.assertIn(normalise(module), normalise(self.blocks[0]["note"]))

    def test_every_annotation_sits_beside_the_code_that_follows_it(self):
        lines = source_lines()
        checked, i = 0, 0
        while i < len(lines):
            if not is_comment(lines[i]):
                i += 1
                continue
            start = i
            while i < len(lines) and is_comment(lines[i]):
                i += 1
            run = lines[start:i]
            if RULE.match(run[0].strip()):
                run = run[2:]                               # the rule and the heading are not the note
            text = " ".join(make_docs.comment_text(line) for line in run)
            text = normalise(html.unescape(re.sub(r"<[^>]+>", "", make_docs.typeset(text))))
            if not text:
                continue
            following = next(line for line in lines[i:] if line.strip())
            matches = [b for b in self.blocks if text in normalise(b["note"])]
            self.assertEqual(len(matches), 1, f"annotation at line {start + 1}: {text[:60]}")
            self.assertEqual(matches[0]["code"].split("\n")[0], following, f"annotation at line {start + 1}")
            checked += 1
        self.assertGreaterEqual(checked, 37)            # every annotation of microgpt.py, as it stands

    def test_sections_in_order_and_every_definition_anchored(self):
        titles = [h.split(":")[0] for h in self.parsed.headings]
        self.assertEqual(titles, ["Preamble", "1. Dataset", "2. Tokenizer", "3. Autograd", "4. Model", "5. Loss",
                                  "6. Optimizer", "7. Training", "8. Sampling", "9. One run"])
        self.assertNotIn("<details", self.page)                 # the page is the algorithm: nothing folded away
        self.assertIn('<a href="../workbench/__init__.py">workbench</a>', self.page)
        for n in range(1, 10):
            self.assertIn(f"sec-{n}", self.parsed.ids)
        defs, _ = docstrings()
        for name, _, _, kind in defs.values():
            self.assertIn(f"{kind}-{name}", self.parsed.ids)
        self.assertIn("fn-softmax", self.parsed.ids)

    def test_every_concept_of_the_readme_links_to_an_anchor_on_the_page(self):
        """One source: the navigation's concept map is the README's table, row for row."""
        rows = [line for line in self.readme[self.readme.index("### Where each idea is explained"):
                                             self.readme.index("## Playing with it")].splitlines()
                if line.startswith("| ") and "---" not in line][1:]
        concept_links = [h for h in self.parsed.nav_links if not h.startswith("#sec-")]
        self.assertGreaterEqual(len(self.parsed.nav_links), len(rows) + 10)
        for href in self.parsed.nav_links:
            self.assertTrue(href.startswith("#") and href[1:] in self.parsed.ids, f"{href} leads nowhere")
        self.assertIn("#fn-Value.backward", concept_links)
        nav = self.page[self.page.index("<nav>"):self.page.index("</nav>")]
        self.assertEqual(nav.count("<tr><td>"), len(rows))

    def test_the_numbers_on_the_page_equal_a_fresh_computation(self):
        """Computed here directly with microgpt, not with make_docs."""
        docs = microgpt.load_docs(NAMES)
        rng = random.Random(42)
        rng.shuffle(docs)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = microgpt.GPT(tokenizer.vocab_size, 16, 4, 1, 16, rng)
        losses = [x.data for x in microgpt.document_losses(gpt, tokenizer.encode("emma"))]
        figure = self.parsed.figures["fig-explain"]
        rows = re.findall(r"(\d) \| (\S+) \| (\S+) \| (\d\.\d{4}) \| (\d\.\d{4}) \|", figure)
        self.assertEqual(len(rows), 5)
        self.assertEqual([float(r[4]) for r in rows], [round(x, 4) for x in losses])
        self.assertEqual([float(r[3]) for r in rows], [round(math.exp(-x), 4) for x in losses])
        self.assertEqual([(r[1], r[2]) for r in rows], [("BOS", "e"), ("e", "m"), ("m", "m"), ("m", "a"), ("a", "BOS")])
        self.assertIn(f"mean loss {sum(losses) / 5:.4f} over 5 positions", figure)
        nodes, edges = graph_size(document_loss(gpt, tokenizer.encode(docs[0])), gpt.params)
        self.assertIn(f"one training step on {docs[0]}", self.parsed.figures["fig-graph"])
        self.assertIn(f"{nodes:,} nodes and {edges:,} edges", self.parsed.figures["fig-graph"])
        self.assertEqual((nodes, edges), (1878, 37882))

    def test_the_classic_engines_counts_on_the_page(self):
        """Bug: the classic engine's node and edge counts swapped on the page (or microgpt's shown twice)."""
        docs = microgpt.load_docs(NAMES)
        rng = random.Random(42)
        rng.shuffle(docs)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        model = classic.ClassicGPT.from_microgpt(microgpt.GPT(tokenizer.vocab_size, 16, 4, 1, 16, rng))
        nodes, edges = graph_size(classic.document_loss(model, tokenizer.encode(docs[0])), model.params)
        figure = " ".join(self.parsed.figures["fig-graph"].split())
        self.assertIn(f"{nodes:,} nodes and {edges:,} edges, {round(nodes / 1878)} times the nodes", figure)
        self.assertNotEqual(nodes, edges)

    def test_the_section_table_fits_the_prose_column(self):
        """At 1366 px the prose column holds about 57 characters of the table's 12 px monospace (measured on a
        headless Chromium screenshot); a longer line wraps and breaks the table, and a line indented by less
        than two spaces leaves the table for a paragraph."""
        table = [line for line in microgpt.__doc__.splitlines() if re.match(r"^ +\d+\. ", line)]
        self.assertEqual([int(line.split(".")[0]) for line in table], list(range(1, 10)))
        for line in table:
            self.assertLessEqual(len(line), 56, line)
            self.assertTrue(line.startswith("  "), line)
        self.assertEqual(normalise(self.page).count("9. One run sections 1-8 assembled"), 1)

    def test_the_picture_of_a_tiny_graph_or_a_word_that_it_is_missing(self):
        """Bug: a page that breaks where Graphviz is missing, or says nothing of the missing picture."""
        figure = self.page[self.page.index('<figure class="measured" id="fig-picture">'):]
        figure = figure[:figure.index("</figure>")]
        if shutil.which("dot"):
            self.assertIn("<svg", figure)
            self.assertIn("cross&#45;entropy", figure)                   # Graphviz escapes the hyphen
        with replaced(make_docs.shutil, "which", lambda name: None):
            self.assertIsNone(make_docs.graph_picture())
        page = make_docs.render(self.source, self.readme, dict(self.facts, picture=None))
        self.assertIn("Graphviz is not installed where this page was built", page)

    def test_formulas_are_typeset(self):
        """Worked out by hand: what the docstrings' formulas become on the page."""
        cases = {"d/da_i = b_i": "∂/∂a<sub>i</sub> = b<sub>i</sub>",
                 "dp_i/dz_j = p_i * ([i == j] - p_j) / T": "∂p<sub>i</sub>/∂z<sub>j</sub> = p<sub>i</sub> · ([i == j] "
                                                          "- p<sub>j</sub>) / T",
                 "s = (mean_j x_j^2 + 1e-5)^-1/2": "s = (mean<sub>j</sub> x<sub>j</sub><sup>2</sup> + 1e-5)<sup>-1/2"
                                                   "</sup>",
                 "sum_i a_i * b_i -> one": "Σ<sub>i</sub> a<sub>i</sub> · b<sub>i</sub> → one",
                 "cos(pi * step) and sqrt(v)": "cos(π · step) and √(v)",
                 "the `n_embd` and block_size": "the <code>n_embd</code> and block_size"}
        for text, want in cases.items():
            self.assertEqual(make_docs.typeset(text), want)

    def test_self_contained(self):
        self.assertNotIn("<script", self.page)
        self.assertNotRegex(self.page, r'(src|href)="(https?:)?//')
        self.assertIn("<style>", self.page)
        self.assertIn("@media print", self.page)
        self.assertIn("@media (max-width: 820px)", self.page)


class TestConceptsMap(unittest.TestCase):
    def test_every_place_the_readme_points_to_exists(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        table = readme[readme.index("### Where each idea is explained"):readme.index("## Playing with it")]
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
        self.assertGreaterEqual(len(rows), 24)
        headings = [make_docs.comment_text(line) for line in source_lines() if re.match(r"# \d+\. ", line)]
        for row in rows:
            where = row.split("|")[2]
            for section in re.findall(r"(\d+\. \w+)", where):
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
        gpt = make_gpt(tokenizer.vocab_size)
        text = "\n".join(source_lines())
        self.assertEqual((len(docs), docs[0], tokenizer.vocab_size, tokenizer.BOS), (29910, "emma", 27, 26))
        self.assertIn("names.txt: 29,910 names, 'emma' first", text)
        self.assertIn("a-z plus BOS: 27 tokens", text)
        self.assertEqual(len(gpt.params), 4192)
        self.assertIn("= 4,192 numbers with the defaults", text)
        self.assertIn(f"ln 27 = {math.log(27):.2f} for", text)
        self.assertIn("'emma' -> [BOS, 4, 12, 12, 0, BOS]", text)
        self.assertEqual(tokenizer.encode("emma")[1:-1], [4, 12, 12, 0])

    def test_graph_sizes_quoted_for_the_fused_nodes(self):
        docs = microgpt.load_docs(NAMES)
        random.Random(42).shuffle(docs)
        tokenizer = microgpt.Tokenizer.from_docs(docs)
        gpt = make_gpt(tokenizer.vocab_size, block_size=16, seed=1)
        tokens = tokenizer.encode(docs[0])
        sizes = [graph_size(loss_fn(gpt, tokens), gpt.params)[0]       # nodes, as make bench counts
                 for loss_fn in (atomic_reference.document_loss, document_loss)]
        self.assertEqual((docs[0], sizes), ("emet", [39443, 1878]))
        self.assertIn("that is 39,443 nodes instead of 1,878", "\n".join(source_lines()))

    def test_the_trace_table_in_document_losses(self):
        out = []
        args = workbench.parse_args(["--explain", "emma"])
        status = workbench.run(args, log=out.append)
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
