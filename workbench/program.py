"""The run: inputs checked, the engine built, then training, looking inside or sampling; the command line's
main(), and every way a run ends turned into an exit status and one line."""
import collections
import importlib
import math
import os
import random
import shlex
import signal
import sys

import microgpt
from .common import DataError, OutputError, Stopped, counted, positions_read, scored, shown
from .engine import MicrogptEngine, count_parameters
from .settings import WRITTEN, kept, parse_args, resolve_settings
from .files import Claim, best_path, check_output, hidden, read_docs, read_stream, same_file, write_atomically
from .text import TextTokenizer, Windows, consecutive, split_stream
from .checkpoint import MAX_WEIGHT, checkpoint_text, load_checkpoint
from .workers import WorkerError, memory_available, workers_of
from .watch import (Console, CsvLog, GradcheckPrinter, Stop, Watch, best_so_far, kept_best, loss_curve,
                    print_explanation, print_verdict, standing, stop_signals)


def check_memory(Engine, settings, vocab_size, training, graph, positions):
    """Raise DataError, before anything is allocated, if the engine says the model (and, where a graph is built
    to train or to look inside, one document's graph of `positions` positions) needs more memory than there is."""
    workers = training and settings.get("workers") or 1     # each process holds a model: --workers given
    need = Engine.memory_needed(settings, vocab_size, graph, positions) * workers
    have = memory_available(Engine, settings)
    if have and need > have:
        n = count_parameters(vocab_size, settings["n_embd"], settings["n_layer"], settings["block_size"])
        if graph and not training:                          # looking inside: the text is what can be shorter
            advice = "give --explain or --gradcheck a shorter text, or look inside a smaller model"
        else:
            smaller = ["block_size", "model"] + (["batch"] if training and settings["batch_size"] > 1 else [])
            advice = (f"choose a smaller {', '.join(smaller[:-1])} or {smaller[-1]}" +
                      (", or fewer --workers" if workers > 1 else ""))
        raise DataError(f"a model of n_embd {settings['n_embd']}, n_layer {settings['n_layer']} and block_size "
                        f"{settings['block_size']}" + (f" (batch {settings['batch_size']})" if training else "") +
                        f" has {n:,} parameters and needs about {need / 1e9:,.1f} GB here" +
                        (f" in {workers} processes" if workers > 1 else "") + f"; this process may use "
                        f"{have / 1e9:,.1f} GB; {advice}")


def read_inputs(args, Engine):
    """The checked inputs of a run, before anything is built: (checkpoint or None, settings, documents,
    tokenizer, the data's SHA-256). Raises DataError for bad input."""
    path = args.resume or args.load
    checkpoint = load_checkpoint(path, Engine) if path else None
    settings = resolve_settings(args, checkpoint, path, Engine)
    if settings["text"]:                                    # one document: the whole stream
        stream, sha256 = read_stream(settings["data"])
        docs = [stream]
    else:
        docs, sha256 = read_docs(settings["data"])
    if checkpoint and args.resume and not args.new_data and checkpoint["data_sha256"] not in (None, sha256):
        raise DataError(f"data file {shown(settings['data'])} is not the text checkpoint {shown(path)} was trained "
                        f"on (its SHA-256 differs), so the run would not go on as it was; give --new-data to train "
                        f"it on this text all the same (its validation history starts again), or resume with its "
                        f"own text")
    Tokenizer = TextTokenizer if settings["text"] else microgpt.Tokenizer
    tokenizer = Tokenizer(checkpoint["chars"]) if checkpoint else Tokenizer.from_docs(docs)
    unknown = sorted(set("".join(docs)) - set(tokenizer.chars))
    if unknown and args.resume:
        raise DataError(f"{shown(settings['data'])} has characters checkpoint {shown(path)} does not know "
                        f"({shown(repr(''.join(unknown[:10])))}); train a new model on it instead of resuming")
    for option, text in (("--explain", args.explain or ""), ("--gradcheck", args.gradcheck or ""),
                         ("--prefix", settings["prefix"])):
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            raise DataError(f"{option} {shown(repr(text))} has characters the model does not know: "
                            f"{shown(repr(''.join(unknown)))}")
    for option, text in (("--explain", args.explain), ("--gradcheck", args.gradcheck)):
        if settings["text"] and text is not None and len(text) == 1:     # (no BOS before it: nothing to predict)
            raise DataError(f"{option} {shown(repr(text))}: with --text a text of one character has nothing to "
                            f"predict; give at least two")
    if len(settings["prefix"]) >= settings["block_size"] and not settings["text"]:     # (--text: the last block_size)
        raise DataError(f"--prefix is {len(settings['prefix'])} characters; it must be shorter than block_size "
                        f"{settings['block_size']}")
    return checkpoint, settings, docs, tokenizer, sha256


class Run:
    """What a run is, built once by prepare() and then only read: the options, the settings, the documents
    (shuffled) and their split, the tokenizer, the random generator, the engine, the step and metrics to go
    on from, the checkpoint it came from (or None), the baselines (or None), where it prints and saves, and
    the output files it claimed. (The engine trains, the generator draws and the metrics grow: that is the
    run going on; which of them a run has never changes.) Raises TypeError for a part missing or unknown,
    AttributeError for a part set after it is built."""
    PARTS = ("args", "Engine", "log", "console", "checkpoint", "settings", "docs", "train_docs", "val_docs",
             "eval_docs", "tokenizer", "rng", "engine", "step", "metrics", "data_sha256", "claims", "baselines",
             "best_path")

    def __init__(self, **parts):
        if set(parts) != set(self.PARTS):
            raise TypeError(f"a Run is made of {', '.join(self.PARTS)}; got {', '.join(sorted(parts))}")
        self.__dict__.update(parts)

    def __setattr__(self, name, value):
        raise AttributeError(f"a Run is built once and read: {name} cannot be set afterwards")

    def save(self, step_done, path=None):
        """Save the run at step_done to `path`, settings["save"] unless given. Raises DataError, writing
        nothing, for a state no checkpoint could hold (validate_checkpoint would refuse it): a weight past
        MAX_WEIGHT, a number that is not finite."""
        state = self.engine.state()
        worst = max((abs(x) for rows in state["params"].values() for row in rows for x in row), default=0.0)
        if not worst <= MAX_WEIGHT:
            raise DataError(f"not saved: a weight has grown to {worst:.3g}, past the {MAX_WEIGHT:g} a checkpoint "
                            f"may hold; the learning rate is far too high (--lr)")
        try:
            text = checkpoint_text(state, self.tokenizer.chars, {s.name: self.settings[s.name] for s in
                                                                 kept(self.Engine)},
                                   step_done, self.rng.getstate(), self.metrics, self.data_sha256)
        except ValueError:                                  # json's allow_nan=False: an inf or a NaN
            raise DataError("not saved: Adam's state or the metrics hold a number that is not finite; the "
                            "learning rate is far too high (--lr)")
        write_atomically(path or self.settings["save"], text)

    def release(self):
        """Let go of the output files this run claimed (once: a claim let go stays let go)."""
        for claim in self.claims:
            claim.release()


def claim_outputs(args, settings):
    """Check --save and --log (check_output: what each may replace) and claim them (Claim). Returns the
    claims. --resume's checkpoint may be saved over, by the run it holds; nothing else the run reads, nor a
    run's best model (resumed without --save, it would be saved over by the models after it)."""
    root = os.path.splitext(args.resume or "")[0]
    if args.resume and not args.save and os.path.splitext(root)[1] == ".best":
        raise DataError(f"--resume {shown(args.resume)} is a run's best model: going on in it would replace it with "
                        f"the models after it; give --save PATH for the resumed run (the best stays where it is)")
    ours = [module for name, module in list(sys.modules.items()) if name.split(".")[0] in ("microgpt", "workbench")]
    program = {getattr(module, "__file__", None) or "" for module in ours} | {sys.argv[0]}
    inputs = {path: "a file of this program" for path in program if path and os.path.isfile(path)}
    inputs[settings["data"]] = "the data file (--data)"
    outputs = [("--resume" if args.resume and not args.save else "--save", "save", "checkpoint"),
               ("--log", "log", "log")]
    if settings["save"]:
        settings = dict(settings, best=best_path(settings["save"]))
        outputs.append(("--save (its best model)", "best", "checkpoint"))
    written = [(option, settings[key]) for option, key, _ in outputs if settings[key]]
    for i, (option, path) in enumerate(written):            # no output is another, or another's hidden file
        for other_option, other in written[:i]:
            if same_file(path, other):
                raise DataError(f"{option} {shown(path)} is the file {other_option} writes too; give them "
                                f"different names")
        for _, other in written:
            if any(same_file(path, hidden(other, suffix)) for suffix in ("tmp", "lock")):
                raise DataError(f"{option} {shown(path)} is the name of a file microgpt keeps beside "
                                f"{shown(other)} while it writes it; give another file name")
    claims = []
    try:
        for option, key, kind in outputs:
            if settings[key]:
                others = dict(inputs, **({args.resume: "the checkpoint --resume reads"} if key == "log" and
                                         args.resume else {}))
                check_output(settings[key], option, kind, others)
                claims.append(Claim(settings[key], option))
    except DataError:
        for claim in claims:
            claim.release()
        raise
    return claims


def prepare(args, Engine, leader=True, log=print):
    """Everything a run starts from, all checked before any work (read_inputs, the model's memory, the
    output files, claimed); then the data shuffled and split, and the engine built (or restored). Raises
    DataError for bad input."""
    checkpoint, settings, docs, tokenizer, sha256 = read_inputs(args, Engine)
    training = not args.load and args.explain is None and args.gradcheck is None
    graph = training or args.explain is not None or args.gradcheck is not None      # a backward pass to keep
    looked_at = [text for text in (args.explain, args.gradcheck) if text]
    # The most positions a graph reads: the text looked inside, if given; else a training document or window
    positions = (min(settings["block_size"], max(map(len, looked_at)) + 1) if looked_at else
                 positions_read(docs, settings))
    check_memory(Engine, settings, tokenizer.vocab_size, training, graph, positions)
    claims = claim_outputs(args, settings) if training and leader else []
    try:
        return build(args, Engine, log, checkpoint, settings, docs, tokenizer, sha256, claims, training and leader)
    except BaseException:
        for claim in claims:
            claim.release()
        raise


def build(args, Engine, log, checkpoint, settings, docs, tokenizer, sha256, claims, counts_baselines=True):
    """The run of prepare(): the documents shuffled by the seed and split, the engine built (or restored), and
    the baselines counted if counts_baselines (a training run's first process: the one that prints them)."""
    rng, block_size = random.Random(settings["seed"]), settings["block_size"]
    if settings["text"]:                                    # windows drawn from the stream, its end held out
        train_text, val_text = split_stream(docs[0], settings["val_fraction"])
        if len(train_text) <= block_size:
            fix = ("give --data a longer text" if checkpoint else "lower --block-size or --val-fraction")
            raise DataError(f"--text: the {len(train_text):,} characters left for training are fewer than a window "
                            f"of block_size + 1 = {block_size + 1}; {fix}")
        train_docs, val_docs = Windows(train_text, block_size, settings["seed"]), consecutive(val_text, block_size)
        counted_on = consecutive(train_text, 1 << 16)       # each character of the training text once, in chunks
    else:
        rng.shuffle(docs)                                   # the seed fixes the order and so the split
        train_docs, val_docs = microgpt.split_docs(docs, settings["val_fraction"])
        counted_on = train_docs
    if not train_docs:
        raise DataError(f"--val-fraction {settings['val_fraction']} of {len(docs)} documents leaves none to "
                        f"train on; lower --val-fraction or add documents")
    engine = Engine(settings, tokenizer, rng, checkpoint)   # the first weights come from rng, as in section 9
    step, metrics = 0, {"train": [], "eval": []}
    if checkpoint:
        rng.setstate(checkpoint["rng_state"])
        if args.resume:
            step, metrics = checkpoint["step"], checkpoint["metrics"]
        if args.resume and checkpoint["data_sha256"] not in (None, sha256):    # --new-data: another text's
            metrics = {"train": metrics["train"],               # validation losses, blanked: not this text's
                       "eval": [dict(row, val_loss=None) for row in metrics["eval"]]}
    eval_docs = val_docs[:settings["eval_docs"]] if settings["eval_docs"] else val_docs
    return Run(args=args, Engine=Engine, log=log, console=Console(log), checkpoint=checkpoint, settings=settings,
               docs=docs, train_docs=train_docs, val_docs=val_docs, eval_docs=eval_docs, tokenizer=tokenizer, rng=rng,
               engine=engine, step=step, metrics=metrics, data_sha256=sha256, claims=claims,
               baselines=baselines(tokenizer, counted_on, eval_docs, None if settings["text"] else block_size) if (
                   counts_baselines and eval_docs) else None,
               best_path=best_path(settings["save"]) if val_docs else None)


def baselines(tokenizer, train_docs, docs, block_size):
    """The losses on `docs` (nats per predicted token, on the positions the model is scored on) of three
    models anyone can count from the training documents: "uniform", every token equally likely (ln
    vocab_size); "unigram", each token as often as in training; "bigram", each token as often as it
    followed the token before it. Counts are over the positions the model trains on and start at 1
    (add-one, or Laplace, smoothing), so that no probability is 0. block_size None: the documents are read
    whole (--text's windows, and its training text in chunks that overlap by a character)."""
    def positions(documents):       # each document's tokens, and how many positions of it are scored
        for tokens in map(tokenizer.encode, documents if block_size is None else scored(documents, block_size)):
            yield tokens, len(tokens) - 1 if block_size is None else microgpt.n_predicted(tokens, block_size)

    V = tokenizer.vocab_size
    unigram, bigram = [1] * V, [[1] * V for _ in range(V)]          # add-one: every count starts at 1
    pairs = collections.Counter()                           # (token, next token): how often, at a position each
    for tokens, n_scored in positions(train_docs):
        pairs.update(zip(tokens[:n_scored], tokens[1:n_scored + 1]))   # (in C: a 50 MB text in seconds, not a minute)
    for (current, target), count in pairs.items():
        unigram[target] += count
        bigram[current][target] += count
    unigram_total, bigram_totals = sum(unigram), [sum(row) for row in bigram]
    surprise = {"unigram": 0.0, "bigram": 0.0}
    n = 0
    for tokens, n_scored in positions(docs):
        for t in range(n_scored):
            current, target = tokens[t], tokens[t + 1]
            surprise["unigram"] -= math.log(unigram[target] / unigram_total)
            surprise["bigram"] -= math.log(bigram[current][target] / bigram_totals[current])
            n += 1
    return {"uniform": math.log(V), "unigram": surprise["unigram"] / n, "bigram": surprise["bigram"] / n}


def print_header(run):
    """What the run is about to do: data, vocabulary, model size, the loss to expect at the start."""
    settings, log, text = run.settings, run.log, run.settings["text"]
    if text:
        train, val = len(run.train_docs.stream), len(run.docs[0]) - len(run.train_docs.stream)
        log(f"text: {len(run.docs[0]):,} characters ({train:,} for training, {val:,} for validation), read in "
            f"windows of block_size + 1 = {settings['block_size'] + 1}")
        if val == 1:                                        # (a window reads one character and predicts the next)
            log("  the 1 held-out character makes no window, so nothing is validated: give a larger --val-fraction")
    else:
        log(f"documents: {len(run.docs):,} ({len(run.train_docs):,} for training, {len(run.val_docs):,} for "
            f"validation)")
    log(f"vocab_size: {run.tokenizer.vocab_size} ({len(run.tokenizer.chars)} characters + BOS)")
    log(f"parameters: {run.engine.n_params:,} (n_embd {settings['n_embd']}, n_head {settings['n_head']}, n_layer "
        f"{settings['n_layer']}, block_size {settings['block_size']})")
    training = not run.args.load
    if training and run.step == 0:                          # (a resumed model is past its initialisation)
        log(f"loss at initialisation should be near ln(vocab_size) = {math.log(run.tokenizer.vocab_size):.4f}")
    n_cut = 0 if text else sum(len(doc) + 1 > settings["block_size"] for doc in run.docs)
    if n_cut and training:
        block = settings["block_size"]
        log(f"cut: {counted(n_cut, 'document is', 'documents are')} longer than block_size {block} allows and "
            f"{'trains on its' if n_cut == 1 else 'train on their'} first {block} positions only; {holding(run.docs)}")
    if run.baselines:
        b = run.baselines
        log(f"baselines on the {counted(len(run.eval_docs), 'validation ' + ('window' if text else 'document'))} "
            f"each evaluation reads: uniform "
            f"{b['uniform']:.4f}, unigram {b['unigram']:.4f}, bigram {b['bigram']:.4f} (nats per token; counted from "
            f"the training {'text' if text else 'documents'}, add-one smoothing)")
    if run.checkpoint:
        path = run.args.resume or run.args.load
        log(f"{'resuming' if run.args.resume else 'loaded'} {shown(path)} at step {run.checkpoint['step']}")
        for line in checkpoint_notes(run):
            log(line)
    if training and run.best_path and run.args.explain is None and run.args.gradcheck is None:
        best = best_so_far(run.metrics)
        where = best and kept_best(run, best)
        log(f"the best model by validation loss is kept in {shown(run.best_path)} as the run goes" + (
            f", once one beats the best so far (val loss {best['val_loss']:.4f} at step {best['step']}, in "
            f"{shown(where)})" if where and not same_file(where, run.best_path) else ""))
        replaced = best_replaced(run, best, where)
        if replaced:
            log(replaced)
    if getattr(run.engine, "about", None):
        log(run.engine.about)


def best_replaced(run, best, where):
    """The line that says the run's best file holds a model the run will replace (another run's), or None:
    nothing there, or this run's own best so far (`best`, its history's row, or None; kept in `where`,
    kept_best's answer), which only a better model replaces."""
    if where and same_file(where, run.best_path):
        return None
    try:
        held = load_checkpoint(run.best_path, run.Engine)
    except DataError:
        return None
    rows = [row for row in held["metrics"]["eval"] if row["step"] == held["step"] and row["val_loss"] is not None]
    loss = f", val loss {rows[-1]['val_loss']:.4f}" if rows else ""
    when = (f"its first model better than its best so far ({best['val_loss']:.4f}) replaces it" if best else
            "its first evaluation replaces it")
    return (f"  {shown(run.best_path)} holds another run's model now (step {held['step']}{loss}): {when} (give "
            f"--save another name to keep it)")


def holding(docs, share=0.99):
    """What block_size would hold `share` of the documents whole (a document of n characters has n + 1
    positions: BOS, then each character), and what would hold them all: a line of the header's cut note."""
    positions = sorted(len(doc) + 1 for doc in docs)
    most = positions[max(math.ceil(share * len(positions)) - 1, 0)]
    return f"--block-size {most} would hold {share:.0%} of the documents whole, {positions[-1]} every one"


def checkpoint_notes(run):
    """What a run from a checkpoint should know before it starts: where it saves, where the checkpoint's
    own run saved and logged (never written unless given again), and whether the data changed."""
    settings, saved, notes = run.settings, run.checkpoint["settings"], []
    if run.args.resume:
        notes.append(f"  it saves to {shown(settings['save'])}" + (" as it goes, the file it resumes" if same_file(
            settings["save"], run.args.resume) else "") + " (--save PATH saves elsewhere)")
        if saved["save"] and not same_file(saved["save"], settings["save"]):
            notes.append(f"  its run saved to {shown(saved['save'])}: give --save {shown(saved['save'])} to save "
                         f"there instead")
        if saved["log"] and not settings["log"]:
            notes.append(f"  its run logged to {shown(saved['log'])}; this run writes no log: give --log "
                         f"{shown(saved['log'])} to go on with it")
    if run.checkpoint["data_sha256"] not in (None, run.data_sha256):
        notes.append(f"  the data file {shown(settings['data'])} is not the text the checkpoint was trained on (its "
                     f"SHA-256 differs): " + ("the text and its split are this file's" if settings["text"] else
                                              "the documents, their order and split are this file's") +
                     (f"; its validation history starts again at step {run.step} (its validation losses were "
                      f"another text's)" if run.args.resume else ""))
    return notes


def train_run(run):
    """Train from run.step to the last step, watched; then the final save, the summary and the loss curve.
    Returns None when training finished; when a signal stopped it, after saving, 128 + the signal's number
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Raises DataError if the loss stops being finite, OutputError if
    an output fails (a full disk, a terminal gone), BrokenPipeError if the output's reader went away: each
    after saving the last good state where it can be."""
    settings = run.settings
    with Stop() as stop:                        # through the final save: a signal now cannot cut it short
        watch, failure = watched_training(run, stop)
        if failure is not None:
            raise ended(run, watch, failure)
        if stop.requested:
            return interrupted(run, watch.step_done, stop.signum, watch.given_up)
        if settings["save"]:
            run.save(watch.step_done)             # first: nothing optional after it (summary, curve) can lose it
        if stop.requested:                      # (a signal during that save: it is done; stop now)
            return interrupted(run, watch.step_done, stop.signum)
    if watch.step_done:
        run.console.line(watch.clock.summary(watch.step_done))
    for line in standing(run) + loss_curve(run.metrics, run.baselines):
        run.log(line)
    if settings["save"]:
        run.log(f"saved {shown(settings['save'])} (sample from it later with --load {shown(settings['save'])})")
    return None


def watched_training(run, stop):
    """The training of train_run(), watched by a Watch: (the watch, the exception that ended it or None)."""
    settings = run.settings
    csv_log = CsvLog(settings["log"], settings["grad_clip"], run.metrics, run.baselines) if settings["log"] else None
    workers = workers_of(run, stop)
    watch, failure = Watch(run, stop, csv_log, workers), None
    # (Under PyPy a batch is shared only when --workers says so: at batch 8 two processes train at 0.9x to 1.2x
    # the speed of one on a 2-core machine, docs/speed.md; its evaluations are shared.)
    pypy = sys.implementation.name == "pypy"
    shared = {"gradients": lambda batch, n_tokens: workers.spread("gradients", batch, n_tokens)} if (
        workers and settings["batch_size"] > 1 and (settings["workers"] or not pypy)) else {}
    try:
        if workers:
            workers.start()                     # now: they start up while the first steps train
        if watch.due():                         # (a stop gave up the evaluation of the step resumed from)
            watch.evaluate()
        if not stop.requested:
            train(run, watch.on_step, **shared)
    except (FloatingPointError, MemoryError, OSError, OutputError, WorkerError) as e:
        failure = e.with_traceback(None)    # (its frames would hold the failed step's graph while the run saves)
    finally:
        if workers:
            workers.close()
        if csv_log:
            failure = csv_log.close() or failure
    return watch, failure


def ended(run, watch, failure):
    """The exception a run that failed mid-way raises, once its last good state is saved where it can be."""
    settings, step, saved = run.settings, watch.step_done, ""
    if settings["save"] and getattr(failure, "path", None) != settings["save"]:     # (unless the save itself failed)
        try:
            run.save(step)
            saved = f"; saved the last good state (step {step}) to {shown(settings['save'])}"
        except (OutputError, DataError) as e:
            saved = f"; could not save the last good state either ({e})"
    if isinstance(failure, MemoryError):
        return DataError(f"out of memory after step {step}{saved}; choose a smaller model or batch")
    if isinstance(failure, FloatingPointError):
        return DataError(f"training stopped at step {step + 1}: {failure}{saved}; try a lower --lr or --grad-clip")
    if isinstance(failure, BrokenPipeError):
        return failure                                      # the reader went away: nothing to tell it
    if isinstance(failure, (OutputError, WorkerError)):
        return type(failure)(f"{failure}{saved}")
    return OutputError(f"cannot write to the output ({failure.strerror}){saved}")


def interrupted(run, step, signum, given_up=None):
    """Save a run a signal stopped, say so (if the output still takes it) and return 128 + signum. given_up:
    the step whose evaluation the stop gave up, if it did (Watch.given_up)."""
    settings, name = run.settings, signal.Signals(signum).name
    where = f"interrupted at step {step}" if signum == signal.SIGINT else f"stopped by {name} at step {step}"
    if given_up is not None:
        where += f" (its evaluation given up{', done first when resumed' if settings['save'] else ''})"
    if settings["save"]:
        run.save(step)
        text = f"{where}: saved {shown(settings['save'])}; continue with {resume_command(settings)}"
    else:
        text = f"{where}: nothing saved (give --save PATH to keep a run)"
    try:
        run.console.line(text)
    except OSError:                             # a closed terminal (SIGHUP): the checkpoint is what matters
        pass
    return 128 + signum


def resume_command(settings):
    """The options that go on with a run saved to settings["save"]: --resume, and every output the run had
    that a checkpoint never names (WRITTEN: --log)."""
    quoted = lambda key: shlex.quote(shown(settings[key], limit=4096))         # (whole: to be run)
    return " ".join([f"--resume {quoted('save')}"] + [f"--{key} {quoted(key)}" for key in WRITTEN
                                                        if key != "save" and settings[key]])


def sample_run(run):
    """Print settings["samples"] new documents, then how many of them are not training documents; with --text,
    settings["samples"] continuations of the prefix, max_new_tokens characters each, as text."""
    settings = run.settings
    if settings["text"]:
        for i in range(settings["samples"]):
            run.log(f"sample {i + 1:2d}:")
            run.log(run.engine.sample(run.rng, settings["temperature"], settings["top_k"], settings["prefix"],
                                      settings["max_new_tokens"]))
        return
    known, new = set(run.train_docs), 0
    for i in range(settings["samples"]):
        text = run.engine.sample(run.rng, settings["temperature"], settings["top_k"], settings["prefix"])
        run.log(f"sample {i + 1:2d}: {text}")
        new += text not in known                            # a validation name counts as new: never trained on
    if settings["samples"]:
        of = counted(settings["samples"], "sample is not a training document", "samples are not training documents")
        run.log(f"new: {new} of {of}")


def look_inside(run):
    """--explain DOC or --gradcheck DOC (default: the first training document, or window), through the engine's inside
    module. Returns the exit status: 0, or 1 if the gradient check fails."""
    inside = importlib.import_module(run.Engine.inside)
    settings, args = run.settings, run.args
    doc = (args.explain if args.explain is not None else args.gradcheck) or run.train_docs[0]
    unknown = sorted(set(doc) - set(run.tokenizer.chars))
    if unknown:                             # (the first document of another --data than the model's)
        first = "window" if settings["text"] else "document"
        raise DataError(f"the first training {first} {shown(repr(doc))} has characters the model does not know "
                        f"({shown(repr(''.join(unknown)))}); give the text to look at: --explain TEXT")
    if args.gradcheck is not None:
        printer = GradcheckPrinter(run, doc)
        return print_verdict(run, inside.gradcheck(run.engine, doc, random.Random(settings["seed"]), printer))
    step = run.checkpoint["step"] if run.checkpoint else 0                # the step the model would take next
    lr = microgpt.lr_schedule(step, settings["steps"], settings["lr"], settings["warmup_steps"], settings["min_lr"])
    note = f" (model at step {step})"
    if step >= settings["steps"] or lr == 0:
        lr, note = settings["lr"], f" (model at step {step}, the end of its run: its step traced at the peak lr)"
    print_explanation(run, doc, inside.explain(run.engine, doc, lr), note)
    return 0


def train(run, on_step, **shared):
    """The engine trains the run's training documents from the step the run is at to its last, calling
    on_step after each (watched_training's Watch, or follow's silence); `shared`: the engine's gradients=."""
    docs = run.train_docs if run.settings["text"] else scored(run.train_docs, run.settings["block_size"])
    return run.engine.train(docs, run.step, on_step, run.settings, **shared)


def follow(run):
    """A process of a multi-process engine other than the first: trains its share, silent, deaf to Ctrl-C
    (the first hears it and stops everyone). Returns the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if not run.args.load:
            train(run, lambda *a: False)
    except FloatingPointError:
        return 2                                            # the first process says why
    return 0


def run(args, Engine=None, leader=True, log=print):
    """The whole program for parsed options. Returns the exit status; raises DataError for bad input."""
    run = prepare(args, Engine or MicrogptEngine, leader, log)
    try:
        if not leader:
            return follow(run)
        print_header(run)
        if args.explain is not None or args.gradcheck is not None:
            return look_inside(run)
        if not args.load:
            status = train_run(run)
            if status is not None:
                return status
        sample_run(run)
        return 0
    finally:
        run.release()


def abandon_stdout():
    """After the output failed (its reader went away, the disk is full): send the rest of stdout nowhere, so
    that not even Python's exit tries it again and prints a traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):           # (stdout is not a file: nothing to abandon)
        pass


def closed_pipe():
    """After BrokenPipeError (the reader of our output went away, as `| head` does): stdout abandoned, and
    141, a shell's status for a program its pipe stopped."""
    abandon_stdout()
    return 141


def say(program, message):
    """One line on stderr: the message with anything unprintable escaped, cut to a sane length."""
    try:
        print(f"{program}: {shown(message, 600)}", file=sys.stderr)
    except (AttributeError, OSError):                       # (stderr closed, or full: nothing more to do)
        pass


def ending(signum, frame):
    """The handler of a stop signal outside training: the run ends (KeyboardInterrupt for Ctrl-C, Stopped for
    SIGTERM and SIGHUP), and every stop signal after this one is ignored, so that a second Ctrl-C cannot cut
    short the line the run says or the files it lets go (it used to end in a traceback)."""
    for other in stop_signals():
        signal.signal(other, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


def main(argv=None, Engine=None, program="microgpt", leader=True, description=None):
    """The command line of `python3 microgpt.py` (Engine None: MicrogptEngine) or of another engine's
    program. Returns the exit status: 0, 1 (a failed gradient check), 2 (bad input), 70 (a worker process
    died), 74 (an output could not be written), 128 + a signal's number (130 Ctrl-C, 143 SIGTERM, 129
    SIGHUP), 141 (the output's reader went away); each failure says why in one line on stderr."""
    def body():
        args = parse_args(argv, Engine, *([description] if description else []))
        return run(args, Engine, leader)
    return entry(program, body)


def entry(program, body):
    """body() -> its exit status, as a program ends: a character the terminal's encoding lacks shown escaped,
    the stop signals ending the run (`ending`; training turns them into a stop after the step), standard output
    flushed where a failure is caught, and every way it can fail turned into a status and one line. The
    handlers before are put back, unless a stop signal ended the run: then they stay ignored (the process is
    ending; a signal let through now would be a traceback)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    previous = {signum: signal.getsignal(signum) for signum in stop_signals()}
    for signum in stop_signals():
        signal.signal(signum, ending)
    try:
        return exit_status(program, body)
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is not signal.SIG_IGN:     # (ignored: by ending, or by Stop after a stop)
                signal.signal(signum, handler)


def exit_status(program, body):
    """body()'s status, every way it can end turned into an exit status and at most one line on stderr."""
    try:
        try:
            status = body()
        except SystemExit as e:                             # --help: argparse prints it and exits
            status = e.code
        if sys.stdout is not None:
            sys.stdout.flush()                  # now, where a failure is caught, not at the interpreter's exit
        return status
    except DataError as e:
        say(program, f"error: {e}")
        return 2
    except MemoryError:                                     # (before training, or after it: nothing to save)
        say(program, "error: out of memory; choose a smaller model, batch or data file")
        return 2
    except BrokenPipeError:
        return closed_pipe()
    except (OutputError, OSError) as e:                     # OSError: stdout itself, outside training
        abandon_stdout()
        say(program, f"error: {e if isinstance(e, OutputError) else f'cannot write to the output ({e.strerror})'}")
        return 74
    except WorkerError as e:
        say(program, f"error: {e}")
        return 70
    except Stopped as e:
        say(program, f"stopped by {e}")
        return 128 + e.signum
    except KeyboardInterrupt:
        say(program, "interrupted")
        return 130
