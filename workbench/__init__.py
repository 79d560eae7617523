"""workbench: what serves the person running a GPT, around an engine that trains it.

microgpt.py is the algorithm, read top to bottom; this package is the bench it runs on: each setting declared
once (and the command line, the checks and the checkpoint derived from it), inputs checked whole before
any work, checkpoints that resume exactly, a run watched as it trains (progress, validation, samples, a
CSV log, periodic saves, Ctrl-C), the loss curve, and what looking inside a model found, printed. None
of it changes what the model computes. `python3 microgpt.py [options]` runs it with microgpt.py's engine,
`python3 microgpt_torch.py [options]` with the PyTorch twin's. Standard library only.

The engine interface. An engine is a class (MicrogptEngine below, microgpt_torch.Engine) that provides:

  Engine(settings, tokenizer, rng, state=None)
      a model sized by the settings n_embd, n_head, n_layer, block_size (and the engine's own options),
      its first weights drawn from rng as microgpt.GPT draws them, and its optimizer; state, if given, is
      what state() returned (from a checkpoint), put in their place
  Engine.memory_needed(settings, vocab_size, graph, positions=None) -> bytes, from the settings and the
      most positions a document is read at (None: block_size); graph: whether a graph is built (to train,
      or to look inside)
  Engine.memory_available(settings) -> bytes, or None for this machine's memory
  engine.n_params
  engine.train(docs, start_step, on_step, settings)
      optimizer steps start_step .. steps - 1 over docs (microgpt.train's walk and schedule); after each,
      on_step(step, loss, lr, grad_norm, batch), and a true answer stops training. Raises
      FloatingPointError, before the update, if the loss or the gradient is not finite
  engine.evaluate(docs) -> (mean loss per predicted token in nats, the number of predicted tokens)
  engine.sample(rng, temperature, top_k, prefix, length=None) -> one new document, drawn with rng; with
      --text (the tokenizer a text.TextTokenizer), the prefix continued by length characters (block_size)
  engine.weights() -> {parameter name: rows of floats}, microgpt.parameter_shapes' names and shapes
  engine.state() -> {"params": weights(), "adam": {"t": steps taken, "m", "v": a float per parameter}}
and, if it has them:
  engine.gradient_parts(batch, n_tokens) -> for each document of batch (lists of token ids), in order:
      (its summed loss / n_tokens, its gradient: a float per parameter), each computed from 0
  engine.nll_parts(batch) -> for each document: (its summed loss in nats, its predicted tokens)
  engine.set_weights(floats): a float per parameter, in weights()' order
      with these three, --workers shares work among processes: a worker process holds an Engine of its own
      and computes its share of a batch or an evaluation; train(..., gradients=) and evaluate(docs, nlls=)
      take the documents' parts so computed and add them up in their order (MicrogptEngine.added, as
      microgpt.batch_gradient adds them)
  Engine.options: the Settings of its own (microgpt_torch: --device, --dtype)
  Engine.inside: the name of a module with explain(engine, doc, lr) and gradcheck(engine, doc, rng)
      (microgpt: inside.py); without one, --explain and --gradcheck are not offered
  engine.about: a line for the header (microgpt_torch: its dtype and device)

Both engines share microgpt.py's data path (documents, Tokenizer, split_docs; with --text, text.py's), its
parameter names and shapes, its learning-rate schedule and its checkpoint file, so the two train on the same
documents from the same first weights, and a checkpoint from either runs in the other.

Its rooms, each one job, none importing another in a circle (each imports only those listed before it):

  common      the exceptions a run ends with, and how input is shown
  text        continuous text (--text): its tokenizer, training windows, split and continued samples
  engine      microgpt.py's engine (MicrogptEngine), the parameter count, perplexity, the update ratio
  settings    each setting declared once; the command line from them
  files       files read whole and checked, written whole or not at all, claimed while written
  checkpoint  the checkpoint's description, held against a file, and its text
  workers     worker processes for --workers (all a worker process imports of the workbench)
  watch       watching a run (status line, clock, CSV log, signals, evaluations, the judge, the curve) and
              printing what looking inside found
  program     a run from its options to its exit status: main()

`import workbench` loads none of them: a name is looked up in its room the first time it is asked for
(workbench.main, from workbench import Setting), so a worker process loads only what it needs.
"""
import importlib
import signal
import sys

ROOMS = {
    "common": (
        'DataError', 'OutputError', 'Stopped', 'counted', 'flat', 'format_seconds', 'physical_memory',
        'positions_read', 'scored', 'shown',
    ),
    "text": (
        'TextTokenizer', 'Windows', 'consecutive', 'continued', 'split_stream',
    ),
    "engine": (
        'COLLECTOR_OFF', 'MicrogptEngine', 'count_parameters', 'perplexity', 'update_ratio',
    ),
    "settings": (
        'ABOVE_0', 'ACTIONS', 'ANY', 'AT_LEAST_0', 'AT_LEAST_1', 'A_FILE_NAME', 'ArgumentParser', 'D', 'FIXED',
        'GROUPS', 'KEPT', 'KINDS', 'LOADED', 'MAX_WHOLE', 'SETTINGS', 'Setting', 'WRITTEN', 'build_parser',
        'check_together', 'check_value', 'kept', 'parse_args', 'resolve_settings', 'settings_of',
    ),
    "files": (
        'Claim', 'EVAL_FIELDS', 'HIDDEN_CONTROLS', 'LOG_COLUMNS', 'MAX_BYTES', 'NOFOLLOW', 'TRAIN_FIELDS', 'best_path',
        'check_output', 'data_memory', 'data_room', 'hidden', 'is_kind', 'leftover', 'printable', 'read_bytes',
        'read_data', 'read_docs', 'read_stream', 'read_text', 'same_file', 'stream_room', 'write_atomically',
    ),
    "checkpoint": (
        'CHECKPOINT_FORMAT', 'Checked', 'Each', 'MAX_WEIGHT', 'Object', 'Row', 'SHA256', 'check_head', 'check_history',
        'checkpoint_text', 'load_checkpoint', 'number', 'settings_description', 'state_description',
        'validate_checkpoint',
    ),
    "workers": (
        'WORKER', 'WorkerError', 'Workers', 'cores', 'exit_description', 'import_root', 'memory_available', 'packed',
        'read_message', 'shared_out', 'unpacked', 'worker_main', 'workers_of', 'write_message',
    ),
    "watch": (
        'Clock', 'Console', 'CsvLog', 'GradcheckPrinter', 'Judge', 'RATIO_BARELY', 'RATIO_TOO_HIGH', 'SHADES', 'Stop',
        'Watch', 'best_so_far', 'draw_curve', 'evaluation', 'fitted', 'holds', 'kept_best', 'loss_curve',
        'perplexity_text', 'print_attention', 'print_explanation', 'print_verdict', 'standing', 'stop_signals',
        'validation_loss',
    ),
    "program": (
        'Run', 'abandon_stdout', 'baselines', 'best_replaced', 'build', 'check_memory', 'checkpoint_notes',
        'claim_outputs', 'closed_pipe', 'ended', 'ending', 'entry', 'exit_status', 'follow', 'holding', 'interrupted',
        'look_inside', 'main', 'prepare', 'print_header', 'read_inputs', 'resume_command', 'run', 'sample_run', 'say',
        'train', 'train_run', 'watched_training',
    ),
}
_WHERE = {name: room for room, names in ROOMS.items() for name in names}


class HeldCtrlC:
    """`with HeldCtrlC() as ctrl_c:` a Ctrl-C during the block (imports, before program.entry takes the signals
    over) is held rather than raised, as is a KeyboardInterrupt the block raises itself: interrupted, Python's
    import machinery can end in another error (a RecursionError), and a second Ctrl-C in a traceback.
    Afterwards ctrl_c.held says whether one came; SIGINT is then left ignored (the program is ending) if
    `ending`, else put back. Outside the main thread the signals are not ours: nothing is held."""

    def __init__(self, ending=True):
        self.ending, self.held, self.holding = ending, False, False

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.hold)
            self.holding = True
        except ValueError:
            pass
        return self

    def hold(self, signum, frame):
        self.held = True

    def __exit__(self, kind, value, traceback):
        self.held = self.held or kind is KeyboardInterrupt
        if self.holding:
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.held and self.ending else self.previous)
        return kind is KeyboardInterrupt


def main(argv=None, Engine=None, program="microgpt", leader=True, description=None):
    """program.main, the command line. A Ctrl-C while its rooms load (tens of milliseconds, before program.entry
    takes the signals over) is held until they have loaded, then ends the run in one line, status 130: let
    through, it ended in microgpt.py's 'interrupted', and a second one a millisecond later in a traceback."""
    with HeldCtrlC() as ctrl_c:
        from . import program as room
    if ctrl_c.held:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    return room.main(argv, Engine, program, leader, description)


def __getattr__(name):
    """workbench.NAME: the object NAME of the room that defines it (ROOMS), imported on first use; or a room."""
    if name in ROOMS:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
