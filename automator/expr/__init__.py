"""The simpleeval sandbox: compile once, evaluate with limits, `{{ }}` templates, the function library.

Expressions are checked when the rules load (a whitelist of syntax, known names and library functions only,
no `_` attributes), so evaluation never meets anything but plain data. Evaluation bounds numbers (|n| <= 10**100),
strings and collections (100,000), and wall time (`EvalContext.deadline_s`); every runtime problem is an
`EvalError` with a message an admin can act on.

The package, one concept a module, lower ones first: `errors`, `limits`, `context` (EvalContext, now, today),
`describe` and `suggest` (how messages talk), `moments` (dates and spans), `operators`, `formatting` (values as
text), `library` (the functions), `linked` (an id that opens onto its entity), `evaluate` (the interpreter and
`Expr`), `compile` (parse and check), `templates`. This module only re-exports the names the rest of automator uses.
"""
from __future__ import annotations

from automator.expr.compile import chain_of, compile_expr
from automator.expr.context import EvalContext, Lookups, Record
from automator.expr.errors import EvalError, ExprSyntaxError
from automator.expr.evaluate import Expr
from automator.expr.formatting import format_value
from automator.expr.library import FUNCTIONS, REFERENCE, FunctionDoc
from automator.expr.linked import Linked
from automator.expr.suggest import suggest
from automator.expr.templates import Template, compile_template

__all__ = ["FUNCTIONS", "REFERENCE", "EvalContext", "EvalError", "Expr", "ExprSyntaxError", "FunctionDoc", "Linked",
           "Lookups", "Record", "Template", "chain_of", "compile_expr", "compile_template", "format_value", "suggest"]
