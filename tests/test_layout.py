"""The layout: microgpt.py is the algorithm and runs alone; the workbench (workbench/) serves the person running it; one
module and one Value class whichever file is the script; each default written once; files and functions
of a size a reader can hold."""
import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

from support import NAMES, ROOT, SCRIPT, TempDirTestCase, microgpt, slow, workbench

WORKBENCH = sorted(os.path.join("workbench", name) for name in os.listdir(os.path.join(ROOT, "workbench"))
                   if name.endswith(".py"))
PROGRAMS = ["microgpt.py", "inside.py", "microgpt_torch.py", "traps.py"] + WORKBENCH


def project_files():
    """Every Python file of the project (the programs, tests, tools, bench, reference)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__pycache__"]
        found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    return sorted(found)


def parse(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return ast.parse(f.read())


class TestMicrogptAlone(TempDirTestCase, unittest.TestCase):
    @slow
    def test_with_only_names_txt_beside_it_it_trains_and_samples_the_default_run(self):
        """Bugs: microgpt.py needing workbench.py (an import at the top, a name it defines); a run of its own
        that is not the default run (another order, other first weights, other samples)."""
        for name in (SCRIPT, NAMES):
            shutil.copy(name, self.tmp)
        r = subprocess.run([sys.executable, "microgpt.py"], cwd=self.tmp, capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["microgpt.py", "names.txt"])   # nothing written
        with open(os.path.join(ROOT, "tests", "data", "default_run.txt"), encoding="utf-8") as f:
            recorded = f.read()
        steps = lambda text: re.findall(r"^step +\d+ / +500 \| loss \d\.\d{4} \| lr \d\.\d{5}", text, re.M)
        self.assertEqual(len(steps(r.stdout)), 500)
        self.assertEqual(steps(r.stdout), steps(recorded))
        samples = lambda text: re.findall(r"^sample +\d+: .*$", text, re.M)
        self.assertEqual(samples(r.stdout), samples(recorded))
        val = re.search(r"^eval  500 \|.*(val loss \d\.\d{4} \| val perplexity \d+\.\d\d)$", recorded, re.M).group(1)
        self.assertIn(val, r.stdout)
        self.assertIn("29,910 documents, vocab_size 27, 4,192 parameters", r.stdout)

    def test_alone_it_refuses_options_in_one_line(self):
        shutil.copy(SCRIPT, self.tmp)
        r = subprocess.run([sys.executable, "microgpt.py", "--steps", "3"], cwd=self.tmp, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "microgpt: error: options need the workbench (workbench/) beside microgpt.py\n")

    def test_alone_without_names_txt_it_says_where_to_get_it(self):
        """Bug: the FileNotFoundError let through (a 15-line traceback), or caught with a message that does
        not say where the data comes from."""
        shutil.copy(SCRIPT, self.tmp)
        r = subprocess.run([sys.executable, "microgpt.py"], cwd=self.tmp, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 2)
        path = os.path.join(os.path.realpath(self.tmp), "names.txt")
        self.assertEqual(r.stderr, f"microgpt: error: {path} not found; put the names.txt that comes with microgpt "
                                   f"beside this file, or any text file with one name per line\n")
        self.assertEqual(r.stdout, "")

    def alone(self):
        """microgpt.py and names.txt alone in self.tmp, started -> the process, its first line of output read."""
        for name in (SCRIPT, NAMES):
            shutil.copy(name, self.tmp)
        p = subprocess.Popen([sys.executable, "microgpt.py"], cwd=self.tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.addCleanup(p.kill)
        first = p.stdout.readline()                 # the header: the run has started training
        self.assertTrue(first.startswith(b"29,910 documents"), first)
        return p

    @slow
    def test_alone_ctrl_c_ends_in_one_line_and_130(self):
        """Bug: KeyboardInterrupt not caught (exit -2 and a traceback), or caught only while importing."""
        p = self.alone()
        p.stdout.readline()                         # a step line: training is under way
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        self.assertEqual((p.returncode, err), (130, b"microgpt: interrupted\n"))

    def test_alone_a_reader_gone_by_the_end_is_met_silently_too(self):
        """Bug: stdout not flushed inside main(): a reader gone by the end (`| true` on a short run) is met by
        Python's own flush at exit, 'Exception ignored ... BrokenPipeError' and status 120."""
        for name in (SCRIPT, NAMES):
            shutil.copy(name, self.tmp)
        with open(os.path.join(self.tmp, "microgpt.py"), encoding="utf-8") as f:
            text = f.read().replace('"steps": 500,', '"steps": 3,')        # a short run, output buffered
        with open(os.path.join(self.tmp, "microgpt.py"), "w", encoding="utf-8") as f:
            f.write(text)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        p = subprocess.Popen([sys.executable, "microgpt.py"], cwd=self.tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        p.stdout.close()                            # the reader is gone before anything is flushed
        _, err = p.communicate(timeout=120)
        self.assertEqual((p.returncode, err), (141, b""))

    def test_alone_a_closed_pipe_ends_silently_in_141(self):
        """Bug: BrokenPipeError let through (exit 1, a traceback), or a second one at exit as Python flushes
        stdout (the descriptor not sent to /dev/null)."""
        p = self.alone()
        p.stdout.readline()
        p.stdout.close()                            # as `| head -2` does after two lines
        self.assertEqual(p.wait(timeout=60), 141)
        self.assertEqual(p.stderr.read(), b"")
        p.stderr.close()


COUNT_VALUES = """
import gc, runpy, sys
sys.argv = [{script!r}, "--steps", "2", "--samples", "1", "--n-embd", "4", "--n-head", "1", "--eval-every", "1"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
values = [c for c in gc.get_objects() if isinstance(c, type) and c.__name__ == "Value" and hasattr(c, "tape")]
print(len(values), sys.modules["microgpt"] is sys.modules["workbench.engine"].microgpt,
      sys.modules["workbench.engine"].microgpt.Value is values[0])
"""


class TestOneModule(unittest.TestCase):
    def test_run_as_a_script_there_is_one_value_class(self):
        """Bug: the `sys.modules["microgpt"] = ...` line removed: workbench's `import microgpt` loads the file a
        second time, a second Value class with its own tape and no_grad switch."""
        r = subprocess.run([sys.executable, "-c", COUNT_VALUES.format(script=SCRIPT)], capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "1 True True")


class TestImports(unittest.TestCase):
    def imports(self, name, top=False):
        """The modules a file imports (`top`: at its top level only, not in functions or `if` blocks)."""
        found = set()
        for node in (parse(name).body if top else ast.walk(parse(name))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:     # (from .room import: the package's own)
                found.add(node.module.split(".")[0])
        return found

    def test_microgpt_py_imports_only_what_the_algorithm_needs(self):
        self.assertEqual(self.imports("microgpt.py", top=True), {"gc", "math", "operator", "os", "random", "sys"})
        self.assertEqual(self.imports("microgpt.py") - self.imports("microgpt.py", top=True), {"workbench"})
        self.assertEqual(self.imports("inside.py"), {"math", "microgpt", "workbench"})   # (workbench.engine: the ratio)

    @unittest.skipUnless(hasattr(sys, "stdlib_module_names"), "this Python does not list its standard library")
    def test_the_programs_import_only_the_standard_library_and_each_other(self):
        ours = {name[:-3] for name in PROGRAMS} | {"workbench"}
        for name in ["microgpt.py", "inside.py", "traps.py"] + WORKBENCH:
            with self.subTest(file=name):
                self.assertEqual(self.imports(name) - set(sys.stdlib_module_names) - ours, set())
        self.assertEqual(self.imports("microgpt_torch.py") - set(sys.stdlib_module_names) - ours, {"torch"})


class TestRooms(unittest.TestCase):
    def test_each_room_imports_only_rooms_before_it(self):
        """Bug: a room importing one listed after it (say files -> watch for the log's header): the first step
        of a circle, which a package of rooms by job exists to prevent."""
        order = list(workbench.ROOMS)
        for i, room in enumerate(order):
            for node in ast.walk(parse(os.path.join("workbench", f"{room}.py"))):
                if isinstance(node, ast.ImportFrom) and node.level:
                    self.assertIn(node.module, order[:i], f"{room} imports {node.module}")
        self.assertEqual(sorted(order), sorted(name[len("workbench/"):-3] for name in WORKBENCH
                                               if not name.endswith("__init__.py")))

    def test_a_run_is_built_once_and_only_read(self):
        """Bugs: a part of the run set mid-run (print_header storing the baselines, training storing its
        workers: what a run has depending on which function ran first); a Run missing a part."""
        run = workbench.prepare(workbench.parse_args(["--steps", "1"]), workbench.MicrogptEngine,
                                log=lambda *a: None)
        try:
            self.assertEqual(set(vars(run)), set(workbench.Run.PARTS))
            self.assertEqual(set(run.baselines), {"uniform", "unigram", "bigram"})        # counted when built
            with self.assertRaises(AttributeError):
                run.baselines = None
            with self.assertRaises(AttributeError):
                run.workers = None
        finally:
            run.release()
        with self.assertRaises(TypeError):
            workbench.Run(args=None)

    def test_the_engine_is_asked_to_train_in_one_place(self):
        """Bug of the kind this layout removed: the 9-argument train(...) call written out twice in the workbench,
        the two drifting apart (a setting passed in one and not the other)."""
        calls = [(room, node.lineno) for room in workbench.ROOMS
                 for node in ast.walk(parse(os.path.join("workbench", f"{room}.py")))
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "train"
                 and getattr(getattr(node.func, "value", None), "attr", "") == "engine"]
        self.assertEqual(len(calls), 1, calls)

    def test_a_worker_process_loads_only_what_a_worker_needs(self):
        """Bug: the worker importing the whole workbench (the run, the watch, the settings) to compute shares."""
        code = (f"import sys; sys.path[0] = {ROOT!r}; from workbench import workers; import workbench.engine; "
                f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'workbench')))")
        self.assertEqual(workbench.WORKER.split("; ")[:2], ["import sys", "sys.path[0] = sys.argv[1]"])
        self.assertIn("from workbench import workers", workbench.WORKER)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout.split(), ["workbench", "workbench.common", "workbench.engine", "workbench.text",
                                            "workbench.workers"])


class TestDeclaredOnce(unittest.TestCase):
    def test_no_function_defaults_a_parameter_named_for_a_setting_to_its_default(self):
        """Bugs of the kind this layout removed: `sample(..., temperature=0.5)`, `GPT(..., n_embd=16)`: a
        second literal default, which drifts from the first when one of them is changed."""
        defaults = {s.name: s.default for s in workbench.SETTINGS}
        for name in PROGRAMS:
            for node in ast.walk(parse(name)):
                if not isinstance(node, (ast.FunctionDef, ast.Lambda)):
                    continue
                args = node.args.args[len(node.args.args) - len(node.args.defaults):]
                for arg, default in zip(args, node.args.defaults):
                    if arg.arg in defaults and isinstance(default, ast.Constant):
                        self.assertNotEqual(default.value, defaults[arg.arg], f"{name}: {arg.arg}={default.value!r}")

    def test_the_algorithms_settings_take_their_defaults_from_microgpt(self):
        """Bug: Setting("temperature", 0.5, ...) in workbench/settings.py beside DEFAULTS' 0.5 in microgpt.py."""
        calls = [node for node in ast.walk(parse(os.path.join("workbench", "settings.py")))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Setting"]
        self.assertEqual(len(calls), len(workbench.SETTINGS))
        for call in calls:
            name = call.args[0].value
            if name in microgpt.DEFAULTS:
                default = call.args[1]
                self.assertTrue(isinstance(default, ast.Subscript) and default.value.id == "D", name)
                self.assertEqual(ast.literal_eval(default.slice), name)
        self.assertEqual({s.name: s.default for s in workbench.SETTINGS if s.name in microgpt.DEFAULTS},
                         microgpt.DEFAULTS)


class TestSizes(unittest.TestCase):
    def test_microgpt_py_is_at_most_700_lines_and_no_file_more(self):
        """Bugs: the textbook growing past its budget again (it was 800 lines, with worker hooks and the
        Engine); a room of the workbench growing into the 2,000-line file it was split from."""
        with open(SCRIPT, encoding="utf-8") as f:
            self.assertLessEqual(len(f.read().splitlines()), 700)
        for path in project_files():
            with open(path, encoding="utf-8") as f:
                self.assertLessEqual(len(f.read().splitlines()), 700, os.path.relpath(path, ROOT))

    def test_no_function_is_longer_than_50_lines(self):
        """A function that grows past a screen gets split by what it does. Every Python file of the project,
        tests included."""
        long = []
        for path in project_files():
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > 50:
                        long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({length} lines)")
        self.assertEqual(long, [])


if __name__ == "__main__":
    unittest.main()
