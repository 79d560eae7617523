"""The learner's page and the pages under docs/: the README short enough to finish, every page linked and
linking back, every command they show one the programs take, and what they quote held to what the
programs print (the default run to its recording, the traps' summary to the traps' own runs in
test_traps)."""
import os
import re
import shlex
import unittest

from support import ROOT, microgpt, workbench

import traps

PAGES = ["README.md"] + sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
                               if name.endswith(".md"))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def code_blocks(text):
    """The lines of every ``` block of a Markdown text."""
    return [block.splitlines() for block in re.findall(r"^```\n(.*?)^```$", text, re.M | re.S)]


def commands(text):
    """Every command line in the page's code blocks: (program, arguments), a trailing # comment cut, a
    `a && b` taken as two commands."""
    found = []
    for block in code_blocks(text):
        for line in block:
            line = line.split("  #")[0].strip()
            if not re.match(r"([A-Z_]+=\S* )*(python3|make|torchrun|pip|head) ", line):
                continue                                            # what a program printed
            for part in line.split("&&"):
                words = shlex.split(part.split(";")[-1].strip())
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):        # OMP_NUM_THREADS=1 ...
                    words = words[1:]
                if words[:1] in (["python3"], ["make"], ["torchrun"], ["pip"], ["head"]):
                    found.append(words)
    return found


class TestThePages(unittest.TestCase):
    def test_the_readme_is_a_page_a_learner_finishes(self):
        """Bug: the README growing back to every option, exit status and table (it was 675 lines)."""
        self.assertLessEqual(len(read("README.md").splitlines()), 300)

    def test_every_page_is_linked_from_the_readme_and_links_back(self):
        """Bugs: a page nobody can find; a link to a page that is not there (renamed, moved)."""
        readme = read("README.md")
        linked = set(re.findall(r"\]\((docs/[\w-]+\.md)(?:#[\w-]+)?\)", readme))
        self.assertEqual(linked, set(PAGES[1:]))
        for page in PAGES[1:]:
            text = read(page)
            self.assertIn("](../README.md)", text, page)
            for target in re.findall(r"\]\(([\w./-]+?)(?:#[\w-]+)?\)", text):
                if not target.startswith("http"):
                    self.assertTrue(os.path.exists(os.path.join(ROOT, "docs", target)), f"{page} -> {target}")

    def test_no_page_holds_a_placeholder(self):
        """Bug: a figure left to fill in (TRAPS_ALL, TODO, XXX) when the page was written."""
        for page in PAGES:
            prose = re.sub(r"^```\n.*?^```$|`[^`\n]+`", "", read(page), flags=re.M | re.S)   # code names its own
            self.assertEqual(re.findall(r"\b(?:[A-Z]{2,}_[A-Z_]+|TODO|XXX|TBD)\b", prose), [], page)

    def test_every_command_on_a_page_is_one_the_programs_take(self):
        """Bugs: a page showing an option that was renamed or removed (--workers for the twin, a default that
        moved), a trap that does not exist, a make target that is not in the Makefile."""
        targets = set(re.findall(r"^([\w-]+):", read("Makefile"), re.M))
        seen = 0
        for page in PAGES:
            for words in commands(read(page)):
                seen += 1
                if words[0] == "make":
                    self.assertIn(words[1], targets, f"{page}: {' '.join(words)}")
                elif words[:2] == ["python3", "microgpt.py"]:
                    workbench.parse_args(words[2:])                         # raises DataError if refused
                elif words[:2] == ["python3", "traps.py"]:
                    self.assertTrue(words[2:] in ([], ["--all"]) or (len(words) == 3 and words[2] in traps.TRAPS),
                                    f"{page}: {' '.join(words)}")
                elif "microgpt_torch.py" in words:
                    self.assertNotIn("--workers", words)                      # the twin refuses it
                    self.assertNotIn("--explain", words)
        self.assertGreaterEqual(seen, 25)

    def test_every_option_is_on_the_options_page_and_no_other(self):
        """Bug: an option added to SETTINGS (or removed) and not to the page that lists them all."""
        table = re.findall(r"^\| `(--[\w-]+)", read(os.path.join("docs", "options.md")), re.M)
        self.assertEqual(sorted(table), sorted(s.option for s in workbench.settings_of(workbench.MicrogptEngine)))
        block = re.search(r"^\| `--block-size N` \| (\d+) \|", read(os.path.join("docs", "options.md")), re.M)
        self.assertEqual(int(block.group(1)), microgpt.DEFAULTS["block_size"])

    def test_the_readme_quotes_the_default_run_as_it_prints(self):
        """Bugs: an excerpt left from an earlier default (block_size 8: other losses, other names); a line
        edited by hand. Every line of the excerpt is a line of the recorded default run, in its order (its
        times aside: the recording blanks them)."""
        excerpt = next(block for block in code_blocks(read("README.md")) if block[0].startswith("documents: "))
        with open(os.path.join(ROOT, "tests", "data", "default_run.txt"), encoding="utf-8") as f:
            recorded = [line.rstrip() for line in f.read().splitlines()]
        at = 0
        for line in excerpt:
            if line == "...":
                continue
            blanked = re.sub(r"\d+\.\d (s|min)( left)?|\d+\.\d ms/step", "<t>", line)
            self.assertIn(blanked, recorded[at:], line)
            at = recorded.index(blanked, at) + 1
        self.assertGreaterEqual(len(excerpt), 30)

    def test_the_status_line_shown_fits_80_columns_as_the_program_draws_it(self):
        """Bug: a status line on the page that the program would not print at 80 columns."""
        readme = read("README.md")
        line = next(line for block in code_blocks(readme) for line in block if re.match(r"step +\d+ /", line))
        self.assertLessEqual(len(line), 79)
        fields = re.fullmatch(r"(step +\d+ /  500) \| (loss \d\.\d{4}) \| (lr \d\.\d{5}) \| ([\d,]+ tokens/s) \| "
                              r"(\d+\.\d s left)", line).groups()
        ranked = [(fields[0], 0), (fields[1], 0), ("(mean of 20 steps)", 4), (fields[2], 2), (fields[3], 3),
                  (fields[4], 1)]
        self.assertEqual(workbench.fitted(ranked, 80), line)


if __name__ == "__main__":
    unittest.main()
