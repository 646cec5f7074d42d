"""Runs the schemathesis CLI (`python tests/sdk/schemathesis_cli.py run ...`).

Works around a CPython 3.11 bug (before 3.11.8): `ast.parse` of a large module from deep
inside a call stack can raise `SystemError: AST constructor recursion depth mismatch`.
Hypothesis parses a strategy's module only to describe its lambdas in reprs; when that
parse fails this way, the lambda is described as unknown instead of ending the run.
"""

import sys

from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _describe_or_unknown(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _describe_or_unknown

from schemathesis.cli import schemathesis  # noqa: E402

if __name__ == "__main__":
    sys.exit(schemathesis())
