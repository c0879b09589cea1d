"""The `labinterp` command line: interpret CSV files, check a laboratory's data files, serve the API.

Exit codes: 0 done (every row interpreted; data valid), 1 done but some rows had errors (or the
data files have problems), 2 usage error, 3 the input cannot be read (missing file, bad header),
4 the reference data or the laboratory profile cannot be loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_ROW_ERRORS, EXIT_USAGE, EXIT_INPUT, EXIT_DATA = 0, 1, 2, 3, 4
PROGRESS_MIN_BYTES = 1_000_000  # smaller files finish before a bar is worth drawing


def _file_options(p: argparse.ArgumentParser, output: str, progress: bool) -> None:
    """The options every file command takes: output, profile, data, and the progress bar."""
    p.add_argument("-o", "--output", required=True, help=output)
    p.add_argument("--lab", help="laboratory profile to use (a sub-directory of --labs-dir)")
    p.add_argument("--labs-dir", default=os.environ.get("LABINTERP_LABS_DIR") or None,
                   help="directory of laboratory profiles (default: $LABINTERP_LABS_DIR)")
    p.add_argument("--data-dir", default=os.environ.get("LABINTERP_DATA_DIR") or None,
                   help="default reference data (default: the embedded reference_ranges/)")
    if progress:
        bar = p.add_mutually_exclusive_group()
        bar.add_argument("--progress", action="store_true", help="always draw the progress bar")
        bar.add_argument("--no-progress", action="store_true", help="never draw the progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labinterp", description=__doc__.split("\n")[0],
                                     epilog="Exit codes: 0 ok, 1 some rows (or data entries) have errors, "
                                            "2 usage, 3 unreadable input, 4 reference data or profile unusable.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("interpret", help="interpret a CSV file of results into a CSV file")
    p.add_argument("file", help="CSV with columns specimen_id, analyte, value, unit [, age_years, age_days, sex, "
                                "specimen, reference_low, reference_high, reference_unit]; '-' for stdin")
    _file_options(p, "output CSV file ('-' for stdout)", progress=True)
    v = sub.add_parser("verify", help="verify a CSV file of results: release or hold, with the reasons")
    v.add_argument("file", help="CSV as for 'interpret', with the optional columns patient_id, collected_at, "
                                "hemolysis_index, hemolysis, comparator; '-' for stdin")
    _file_options(v, "output CSV file ('-' for stdout)", progress=True)
    r = sub.add_parser("verify-report", help="replay a CSV file of past results through the verification rules "
                                             "and write a self-contained HTML validation report")
    r.add_argument("file", help="CSV as for 'verify'")
    _file_options(r, "the HTML report to write", progress=True)
    c = sub.add_parser("check-data", help="validate reference data or a laboratory's data files")
    c.add_argument("dir", nargs="?", help="a laboratory profile directory, a directory of profiles, or a "
                                          "full reference data directory (default: the embedded data)")
    s = sub.add_parser("serve", help="run the HTTP API under gunicorn")
    s.add_argument("--bind", default=os.environ.get("LABINTERP_BIND", "127.0.0.1:8000"))
    s.add_argument("--workers", type=int, default=int(os.environ.get("LABINTERP_WORKERS", "2")))
    s.add_argument("--threads", type=int, default=int(os.environ.get("LABINTERP_THREADS", "4")))
    s.add_argument("--labs-dir", help="directory of laboratory profiles (sets LABINTERP_LABS_DIR)")
    args = parser.parse_args(argv)
    if args.command == "interpret":
        return interpret(args)
    if args.command == "verify":
        return verify(args)
    if args.command == "verify-report":
        return verify_report(args)
    if args.command == "check-data":
        return check_data(args.dir)
    return serve(args)


def _error(message: str) -> None:
    print(f"labinterp: {message}", file=sys.stderr)


def interpret(args: argparse.Namespace) -> int:
    from labinterp.core import DataError, Engine, InvalidInput, load_knowledge
    from labinterp.core.columnar import ColumnarInterpreter
    from labinterp.files.csvfile import CsvJob, Summary

    try:
        engine = Engine(load_knowledge(args.data_dir, args.labs_dir))
        interpreter = ColumnarInterpreter(engine, args.lab)
    except (DataError, InvalidInput) as exc:
        _error(str(exc))
        return EXIT_DATA
    job, code = _file_job(args, lambda binary, progress: CsvJob(interpreter, binary, progress=progress))
    if job is None:
        return code
    summary: Summary = job.summary
    print(f"rows {summary.rows}, derived {summary.derived}, abnormal {summary.abnormal}, "
          f"critical {summary.critical}, errors {summary.errors}", file=sys.stderr)
    return EXIT_ROW_ERRORS if summary.errors else EXIT_OK


def _file_job(args: argparse.Namespace, make: Callable[[IO[bytes], Progress | None], Iterable[bytes]],
              output: bool = True) -> tuple[Any, int]:
    """A file command's run: the input opened (a path, or '-' for stdin), the progress bar drawn when asked (or
    on a terminal, for a large file), the job made by `make` (a bad header is exit 3) and its blocks written to
    the output (each computed while the one before is written), or only run when `output` is False. Returns the
    job, or None and the exit code after saying why."""
    from labinterp.files.csvfile import CsvHeaderError, ahead

    try:
        binary: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        _error(f"cannot read {args.file}: {exc.strerror}")
        return None, EXIT_INPUT
    size = 0 if args.file == "-" else os.fstat(binary.fileno()).st_size
    show = not args.no_progress and (args.progress or (sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES))
    progress = Progress(binary, size) if show else None
    completed = False
    try:
        with binary:
            try:
                job = make(binary, progress)
            except CsvHeaderError as exc:
                _error(f"{args.file}: {exc}")
                return None, EXIT_INPUT
            if not output:
                for _ in job:
                    pass
                completed = True
                return job, EXIT_OK
            try:
                out: IO[bytes] = sys.stdout.buffer if args.output == "-" else open(  # noqa: SIM115
                    args.output, "wb")
            except OSError as exc:
                _error(f"cannot write {args.output}: {exc.strerror}")
                return None, EXIT_INPUT
            try:
                for block in ahead(iter(job)):
                    out.write(block)
                completed = True
            finally:
                if out is not sys.stdout.buffer:
                    out.close()
    finally:
        if progress is not None:
            progress.finish(completed)
    return job, EXIT_OK


def _verification(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(engine, rules by laboratory) for the verify commands, or None after saying why."""
    from labinterp.core import DataError, Engine, InvalidInput, load_knowledge
    from labinterp.core.verification_data import load_verification

    try:
        knowledge = load_knowledge(args.data_dir, args.labs_dir)
        engine = Engine(knowledge)
        engine.profile(args.lab)
        return engine, load_verification(knowledge)
    except (DataError, InvalidInput) as exc:
        _error(str(exc))
        return None


def verify(args: argparse.Namespace) -> int:
    from labinterp.files.verifycsv import VerifyJob

    loaded = _verification(args)
    if loaded is None:
        return EXIT_DATA
    engine, rules = loaded
    job, code = _file_job(args, lambda binary, progress: VerifyJob(engine, rules, args.lab, binary,
                                                                   progress=progress))
    if job is None:
        return code
    summary = job.summary
    print(f"rows {summary.rows}, released {summary.released}, held {summary.held}, errors {summary.errors}",
          file=sys.stderr)
    return EXIT_ROW_ERRORS if summary.errors else EXIT_OK


def verify_report(args: argparse.Namespace) -> int:
    from labinterp.files.verifycsv import VerifyJob
    from labinterp.render.verify_report import html, terminal

    loaded = _verification(args)
    if loaded is None:
        return EXIT_DATA
    engine, rules = loaded
    # the rows are replayed for their counts; the verified CSV itself is not kept
    job, code = _file_job(args, lambda binary, progress: VerifyJob(engine, rules, args.lab, binary,
                                                                   progress=progress), output=False)
    if job is None:
        return code
    try:
        Path(args.output).write_text(html(job.summary, job.rules, Path(args.file).name), encoding="utf-8")
    except OSError as exc:
        _error(f"cannot write {args.output}: {exc.strerror}")
        return EXIT_INPUT
    print(terminal(job.summary))
    print(f"report written to {args.output}")
    return EXIT_OK


class Progress:
    """A progress bar on stderr, by bytes read, redrawn at most ten times a second."""

    def __init__(self, binary: IO[bytes], size: int, width: int = 30):
        self.binary, self.size, self.width = binary, size, width
        self.last = 0.0
        self.drawn = False
        self.summary: Any = None

    def __call__(self, summary: Any, final: bool = False) -> None:
        self.summary = summary
        now = time.monotonic()
        if now - self.last < 0.1 and not final:
            return
        self.last = now
        try:
            done = self.size if final else self.binary.tell()
        except (OSError, ValueError):
            done = 0
        fraction = min(1.0, done / self.size) if self.size else 0.0
        filled = int(fraction * self.width)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} "
                         f"{summary.rows:,} rows")
        sys.stderr.flush()
        self.drawn = True

    def finish(self, completed: bool) -> None:
        if completed and self.summary is not None:
            self(self.summary, final=True)
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def check_data(directory: str | None) -> int:
    from labinterp.core import DataError, load_knowledge
    from labinterp.core.knowledge import DATA_FILES, PROFILE_FILES, load_profile
    from labinterp.core.verification_data import load_verification

    problems: list[tuple[str, str, str]] = []
    checked = "the embedded reference data"
    try:
        if directory is None:
            load_verification(load_knowledge())
        else:
            path = Path(directory)
            if not path.is_dir():
                _error(f"{directory} is not a directory")
                return EXIT_INPUT
            files = {p.name for p in path.iterdir() if p.is_file()}
            if set(DATA_FILES) <= files:
                checked = f"reference data in {directory}"
                load_verification(load_knowledge(path))
            elif files & set(PROFILE_FILES):
                checked = f"laboratory profile {path.name}"
                base = load_knowledge()
                base.profiles[path.name] = load_profile(base, path)
                load_verification(base)
            else:
                checked = f"laboratory profiles in {directory}"
                knowledge = load_knowledge(None, path)
                if not knowledge.profiles:
                    _error(f"{directory} holds no reference data, laboratory profile or profile directories")
                    return EXIT_INPUT
                checked += f" ({', '.join(sorted(knowledge.profiles))})"
                load_verification(knowledge)
    except DataError as exc:
        problems = exc.problems
    for file, entry, problem in problems:
        print(f"{file}: {entry}: {problem}", file=sys.stderr)
    if problems:
        print(f"{checked}: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_ROW_ERRORS
    print(f"{checked}: valid")
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn serving the app factory (settings from LABINTERP_*)."""
    if args.labs_dir:
        os.environ["LABINTERP_LABS_DIR"] = args.labs_dir
    # The project's gunicorn.conf.py (JSON logs, no Server banner, shared metrics, graceful shutdown)
    # applies here as under `make run`; the command-line options below override its bind and sizes.
    config = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    command = [sys.executable, "-m", "gunicorn", *(["-c", str(config)] if config.is_file() else []),
               "--bind", args.bind, "--workers", str(args.workers), "--threads", str(args.threads),
               "--worker-class", "gthread", "--preload", "labinterp.app:create_app()"]
    os.execv(sys.executable, command)
    return EXIT_OK  # pragma: no cover - execv does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
