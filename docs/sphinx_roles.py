"""Griffe extension for the docs site: turns the Sphinx roles of rladapt's docstrings
(``:class:`Agent```, ``:func:`~rladapt.wrappers.state.get_state```) into mkdocs-autorefs links.

mkdocstrings' sphinx docstring style parses ``:param x:`` fields but leaves inline roles as text;
this resolves each role's target in the docstring's own scope (as Sphinx would). A target that
exists becomes an optional link (a link where the site documents it, plain code where it does not:
the API pages show the public API, not every internal helper); a target that does not exist in the
package (a typo, a renamed method) becomes a required link, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(\(\))?`")


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The full path of ``name`` seen from ``obj`` (its members, its class, its module, imports)."""
    if "." in name:
        head, _, rest = name.partition(".")
        base = _resolve(obj, head)
        return f"{base}.{rest}" if base else None
    scope: Any = obj
    while scope is not None:
        if scope.is_class and name in scope.all_members:  # a method or attribute, inherited ones too
            return f"{scope.path}.{name}"
        try:
            return scope.resolve(name)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
    return None


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a loaded package once, after the whole package is known."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda match: _link(obj, match), obj.docstring.value)


def _exists(root: griffe.Object, path: str) -> bool:
    """Whether ``path`` names an object of the package ``root`` (inherited members count)."""
    parts = path.split(".")
    if parts[0] != root.name:
        return False
    obj: Any = root
    for part in parts[1:]:
        if obj.is_alias:
            try:
                obj = obj.final_target
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return False
        members = obj.all_members if obj.is_class else obj.members
        if part not in members:
            return False
        obj = members[part]
    return True


def _link(obj: griffe.Object, match: re.Match) -> str:
    tilde, target, call = match.groups()
    path = _resolve(obj, target) or target
    title = f"`{target.rsplit('.', 1)[-1] if tilde else target}{call or ''}`"
    if _exists(obj.package, path):
        return f'<autoref identifier="{path}" optional>{title}</autoref>'
    return f"[{title}][{path}]"


def _walk(obj: griffe.Object):  # noqa: ANN202
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)
