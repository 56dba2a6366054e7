"""Book-wide rules for every chapter notebook: test-set discipline.

The book's rule: every choice (epochs, thresholds, settings) is made on a validation split; the
test set is touched once per model, at the end, to report. The convention that makes it checkable:

1. Every code cell that reads the test split carries the cell tag ``test-set``. A cell reads the
   test split when its code (comments aside) matches one of ``TEST_READS`` below, or uses a name
   that an earlier cell assigned from test data (``x_test`` -> ``loader = TensorBatches(x_test)``
   -> ``trainer.fit(..., loader)``: the last cell reads the test split too).
2. A ``test-set`` cell only evaluates and reports: it matches none of ``TRAINS_OR_CHOOSES``.
3. The test set comes last: no cell trains after the first ``test-set`` cell (solution cells of
   the exercises aside).

A new chapter follows the rule by tagging its test cells; a new way of reading the test split or
of training is one more line in the lists below.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TAG = "test-set"

# What reads the test split (regular expressions on a cell's code without its comments).
TEST_READS: list[tuple[str, str]] = [
    ("a test-split variable", r"\b(test_images|test_labels|x_test|y_test|test_loader|test_set|"
                              r"test_dataset|test_batches)\b"),
    ("the test split of cifar2_data()", r"\bdata\.test\b|\.test\.(images|labels)\b"),
    ("a test folder", r"\b(cifar2_folder|cifar10_folder)\(\s*(split\s*=\s*)?['\"]test['\"]"),
    ("dataset_folder(..., 'test')", r"\bdataset_folder\([^)]*['\"]test['\"]"),
    ("a /test path", r"/\s*['\"]test['\"]|['\"][^'\"\n]*/test/?['\"]"),
]

# What a test-set cell must not do: train, or choose anything (an epoch, a threshold, a setting).
TRAINS_OR_CHOOSES: list[tuple[str, str]] = [
    ("trains (.fit)", r"\.fit\("),
    ("trains (a training function)", r"\b(train_model|train_recipe|train_epoch)\("),
    ("computes gradients (.backward)", r"\.backward\("),
    ("steps an optimiser or a schedule", r"\.step\("),
    ("shuffles (a training loader)", r"\bshuffle\s*=\s*True\b"),
    ("picks the best row of a table of metrics", r"\.(idxmax|idxmin)\("),
    ("picks the best by a key", r"\b(max|min|sorted)\([^()]*\bkey\s*="),
    ("searches for a best value", r"\bbest_?\w*\s*=[^=]"),
    ("searches over thresholds", r"\bfor\s+\w*threshold\w*\s+in\b|\bthresholds?\s*\[.*arg(max|min)"),
    ("takes the arg-max of a metric", r"(auc|acc|loss|f1|metric)\w*['\"\])]*\s*\.arg(max|min)\("
                                      r"|\barg(max|min)\(\s*[\w.]*(auc|acc|loss|f1|metric)"),
]

TRAINS = TRAINS_OR_CHOOSES[:4]  # fit, a training function, backward, an optimiser step


def python_code(source: str) -> str:
    """The cell's code as plain Python: IPython magics turned into calls, comments removed."""
    code = TransformerManager().transform_cell(source)
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(code).readline)
                  if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return code


def matches(code: str, patterns: list[tuple[str, str]]) -> list[str]:
    """The descriptions of the patterns that occur in `code`."""
    return [what for what, pattern in patterns if re.search(pattern, code)]


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def loaded_names(tree: ast.AST) -> set[str]:
    """Names the code reads from outside it (not the own names of a function or comprehension)."""
    local = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    local |= {name for n in ast.walk(tree) if isinstance(n, ast.comprehension)
              for name in assigned_names(n.target)}
    local |= {n.id for scope in ast.walk(tree) if isinstance(scope, SCOPES)
              for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return {n.id for n in ast.walk(tree)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local


def outer_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of the code, without descending into function or class bodies."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, SCOPES):
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def assigned_names(target: ast.AST) -> set[str]:
    """Names an assignment target binds (tuples unpacked)."""
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def bindings(tree: ast.AST) -> list[tuple[ast.AST, set[str], ast.AST | None]]:
    """(node, names it binds, the expression they come from) for each binding, in code order."""
    found = []
    for node in outer_nodes(tree):
        if isinstance(node, ast.Assign):
            found.append((node, set().union(*map(assigned_names, node.targets)), node.value))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            found.append((node, assigned_names(node.target), node.value))
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            found.append((node, assigned_names(node.target), node.iter))
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            found.append((node.context_expr, assigned_names(node.optional_vars), node.context_expr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node, {node.name}, None))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, {(a.asname or a.name).split(".")[0] for a in node.names}, None))
    return sorted(found, key=lambda b: (b[0].lineno, b[0].col_offset))


def update_tainted(tree: ast.AST, tainted: set[str]) -> None:
    """Follow the code's bindings in order: a name bound from test data becomes tainted."""
    for node, names, source in bindings(tree):
        from_test = source is not None and (bool(matches(ast.unparse(source), TEST_READS))
                                            or bool(loaded_names(source) & tainted))
        if from_test or (isinstance(node, ast.AugAssign) and names & tainted):
            tainted |= names
        else:
            tainted -= names


def tainted_reads(statement: ast.stmt, tainted: set[str]) -> set[str]:
    """Tainted names a statement reads, then its bindings; a for loop binds before its body runs."""
    if not isinstance(statement, (ast.For, ast.AsyncFor)):
        via = loaded_names(statement) & tainted
        update_tainted(statement, tainted)
        return via
    via = loaded_names(statement.iter) & tainted
    if via or matches(ast.unparse(statement.iter), TEST_READS):
        tainted |= assigned_names(statement.target)
    else:
        tainted -= assigned_names(statement.target)
    for inner in statement.body + statement.orelse:
        via |= tainted_reads(inner, tainted)
    return via


def find_test_set_breaches(nb: nbformat.NotebookNode) -> list[str]:
    """Every breach of the convention in a notebook, as 'cell N: what' lines (empty: it follows it)."""
    problems, tainted, first_test = [], set(), None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code = python_code(cell.source)
        tagged = TAG in cell.metadata.get("tags", [])
        reads = matches(code, TEST_READS)
        try:
            tree = ast.parse(code)
        except SyntaxError:
            tree = None
        if tree is not None:
            via = set()
            for statement in tree.body:  # in order: a name read before it is rebound counts
                via |= tainted_reads(statement, tainted)
            reads += [f"names assigned from test data ({', '.join(sorted(via))})"] if via else []
        if reads and not tagged:
            problems.append(f"cell {index}: reads the test split ({'; '.join(reads)}) "
                            f"without the tag '{TAG}'")
        if tagged:
            problems += [f"cell {index}: a '{TAG}' cell {what}" for what in matches(code, TRAINS_OR_CHOOSES)]
            first_test = index if first_test is None else first_test
        elif first_test is not None and not is_solution(cell) and matches(code, TRAINS):
            problems.append(f"cell {index}: trains after the test set was read (cell {first_test})")
    return problems


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """True for a solution cell: exercises may train again after the chapter's test report."""
    return "solution" in cell.metadata.get("tags", [])


# --- the checker itself, on tiny notebooks ------------------------------------------------------

def notebook(*cells: tuple[str, list[str]]) -> nbformat.NotebookNode:
    """A notebook of code cells given as (source, tags)."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source, metadata={"tags": tags})
                                           for source, tags in cells])


GOOD = [
    ('data = cifar2_data()\nfit_loader = TensorBatches(data.fit.images, shuffle=True)', []),
    ("trainer.fit(fit_loader, epochs=3)  # never on test_loader", []),
    ("best_epoch = history['valid_auc'].idxmax()", []),
    ('test_images, test_labels, _ = load(cifar2_folder("test"))', [TAG]),
    ("scores = predict(model, test_images)\nauc = roc_auc(scores, test_labels)\n"
     "predicted = scores.argmax(dim=1)", [TAG]),
    ("print(f'test AUC {auc:.3f}')", [TAG]),
    ("for tta, probs in {True: scores}.items():\n    print(tta, probs.mean())", [TAG]),
    ("auc = 0.5  # reassigned from nothing of the test set: free again\nprint(auc)", []),
    ("%pip install nothing\n!ls data/cifar2/train", []),
    ("for tta in (False, True):  # a loop variable bound afresh, not from the test set\n"
     "    print(tta)", []),
    ("def total(batch):\n    scores = batch.sum()  # its own scores, not the test scores\n"
     "    return scores\n\nsquares = [scores ** 2 for scores in range(3)]", []),
]


def test_the_checker_passes_a_notebook_that_follows_the_rule() -> None:
    """Tagged test cells that only evaluate and report; choices made on validation data."""
    assert find_test_set_breaches(notebook(*GOOD)) == []


@pytest.mark.parametrize("cells, expected", [
    ([('x_test = load(cifar2_folder("test"))', [])], "without the tag"),
    ([('folder = cifar10_folder(split="test")', [])], "a test folder"),
    ([('folder = root / "cifar2" / "test"', [])], "a /test path"),
    ([("images = data.test.images", [])], "the test split of cifar2_data()"),
    ([('files = dataset_folder("cifar2", "test")', [])], "dataset_folder"),
    ([("trainer.fit(train_loader, test_loader)", [TAG])], "trains (.fit)"),
    ([("loss = criterion(model(x_test), y_test)\nloss.backward()\noptimizer.step()", [TAG])],
     "computes gradients"),
    ([("loader = TensorBatches(x_test, y_test, shuffle=True)", [TAG])], "shuffles"),
    ([("best = history['test_auc'].idxmax()", [TAG])], "picks the best row"),
    ([("for threshold in grid:\n    scores.append(accuracy(test_labels, p > threshold))", [TAG])],
     "searches over thresholds"),
    ([("print(roc_auc(predict(model, test_images), test_labels))", [TAG]),
      ("trainer.fit(fit_loader, epochs=3)", [])], "trains after the test set was read"),
    ([("valid_loader = TensorBatches(x_test, y_test)", [TAG]),
      ("train_model(model, train_loader, valid_loader, epochs=20)", [])],
     "names assigned from test data (valid_loader)"),
], ids=["untagged", "split=", "path", "data.test", "dataset_folder", "fit", "backward", "shuffle", "idxmax",
        "threshold", "trains-after-test", "loader-flows-into-training"])
def test_the_checker_fails_each_breach(cells: list[tuple[str, list[str]]], expected: str) -> None:
    """Each bad notebook gives a problem that names what went wrong."""
    problems = find_test_set_breaches(notebook(*GOOD, *cells))
    assert problems and any(expected in p for p in problems), problems


# --- the book ------------------------------------------------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_touches_the_test_set_only_in_tagged_report_cells(chapter: Path) -> None:
    """Test data is read only in cells tagged 'test-set', and those cells never train or choose."""
    problems = find_test_set_breaches(nbformat.read(chapter, as_version=4))
    assert not problems, f"{chapter.name} breaks the test-set rule:\n" + "\n".join(problems)
