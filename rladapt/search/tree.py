"""Monte Carlo tree search over a :class:`~rladapt.search.game.TurnBasedGame`: one tree, two rules.

- **UCT** (Kocsis & Szepesvari 2006; what :class:`~rladapt.agents.MCTS` uses): an unvisited move
  first, then ``Q + c * sqrt(ln N / n)``; a new leaf is valued by a random playout to the end.
- **PUCT** (Silver et al. 2017; what :class:`~rladapt.agents.AlphaZero` uses):
  ``Q + c * P * sqrt(N) / (1 + n)`` with the network's prior ``P``; a new leaf is valued by the
  network, and Dirichlet noise may be mixed into the root's prior for exploration.

Every value is a vector of one return per player, so a node's statistics are those of the player
who moves there: a leaf's value ``v`` is added at each node on the path as ``v[node.player]``.
Only legal moves are ever expanded (the game's mask is the only source of moves). Positions whose
result is known are solved on the way (MCTS-Solver, Winands et al. 2008): a terminal position, a
position with a winning move, a position whose every move is solved. Selection plays a solved
win at once and avoids solved losses, and :func:`best_move` does the same, so a search never
misses a win in one or walks into a loss it has proved. The game is left at the root position
when the search returns.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

import numpy as np

from rladapt.search.game import TurnBasedGame

__all__ = ["LatentNode", "MinMaxStats", "Node", "best_move", "legal_moves", "random_playout", "search", "search_model",
           "value_vector", "visit_policy"]

#: A leaf evaluator: ``game -> (prior over num_actions or None, value per player)``.
Evaluator = Callable[[TurnBasedGame], tuple[np.ndarray | None, np.ndarray]]


def legal_moves(game: TurnBasedGame) -> list[int]:
    """The legal moves as a list of ints (the game's fast path when it has one)."""
    fast = getattr(game, "legal_list", None)
    if fast is not None:
        return fast()
    return np.flatnonzero(game.legal_actions()).tolist()


def value_vector(value: float, player: int, num_players: int) -> np.ndarray:
    """A zero-sum value vector from one value for ``player`` (the others share its negation)."""
    out = np.full(num_players, -value / max(1, num_players - 1))
    out[player] = value
    return out


class Node:
    """A position in the tree: the player to move, its legal moves, and per move the prior, the
    visit count and the sum of values (for the player to move) of the simulations through it.

    :param game: the game at this position.
    """

    __slots__ = ("player", "actions", "prior", "visits", "value_sum", "children", "terminal", "outcome", "total", "proven")

    def __init__(self, game: TurnBasedGame, exact: bool = True) -> None:
        self.terminal = game.is_terminal()
        self.outcome = game.outcome() if self.terminal else None
        self.player = -1 if self.terminal else game.current_player()
        self.actions: list[int] = [] if self.terminal else legal_moves(game)
        self.prior: list[float] | None = None
        self.visits = [0] * len(self.actions)
        self.value_sum = [0.0] * len(self.actions)
        self.children: list[Node | None] = [None] * len(self.actions)
        self.total = 0
        #: The exact value per player once solved (a terminal position's outcome), else None.
        #: ``exact=False`` (a single-player env: an episode's end is no win or loss) never solves.
        self.proven: np.ndarray | None = self.outcome if exact else None

    def solve(self) -> bool:
        """Mark the position solved when a move wins for the player to move or every move is
        solved (then with the best of them); True when it is solved."""
        if self.proven is not None:
            return True
        best = None
        for child in self.children:
            if child is None or child.proven is None:
                if best is not None and best[self.player] >= 1:
                    break
                continue
            if best is None or child.proven[self.player] > best[self.player]:
                best = child.proven
        if best is not None and (best[self.player] >= 1 or all(c is not None and c.proven is not None for c in self.children)):
            self.proven = best
            return True
        return False

    def set_prior(self, prior: np.ndarray) -> None:
        """The prior over the legal moves, from a prior over all actions (renormalised)."""
        p = np.asarray(prior, dtype=np.float64)[self.actions]
        total = p.sum()
        self.prior = (p / total).tolist() if total > 0 else [1.0 / len(p)] * len(p)

    def add_noise(self, alpha: float, fraction: float, rng: np.random.Generator) -> None:
        """Mix Dirichlet(alpha) noise into the prior: ``(1 - fraction) * P + fraction * noise``."""
        if self.prior is None or not self.actions:
            return
        noise = rng.dirichlet([alpha] * len(self.actions))
        self.prior = [(1 - fraction) * p + fraction * n for p, n in zip(self.prior, noise)]


def _solved_choice(node: Node) -> tuple[int | None, list[int]]:
    """``(a solved winning move or None, the moves solved as losses)`` for the player to move."""
    losing = []
    for i, child in enumerate(node.children):
        if child is not None and child.proven is not None:
            if child.proven[node.player] >= 1:
                return i, losing
            if child.proven[node.player] <= -1:
                losing.append(i)
    return None, losing


def _select_uct(node: Node, c: float, rng: random.Random, scale_values: "MinMaxStats | None" = None) -> int:
    win, losing = _solved_choice(node)
    if win is not None:
        return win
    if losing and len(losing) < len(node.actions):
        return _select_uct_among(node, c, rng, [i for i in range(len(node.actions)) if i not in losing], scale_values)
    return _select_uct_among(node, c, rng, range(len(node.actions)), scale_values)


def _select_uct_among(node: Node, c: float, rng: random.Random, candidates: Any,
                      scale_values: "MinMaxStats | None" = None) -> int:
    unvisited = [i for i in candidates if node.visits[i] == 0]
    if unvisited:
        return unvisited[0] if len(unvisited) == 1 else rng.choice(unvisited)
    log_total = math.log(node.total)
    best, best_score = 0, -math.inf
    for i in candidates:
        n, w = node.visits[i], node.value_sum[i]
        q = w / n if scale_values is None else scale_values.normalize(w / n)
        score = q + c * math.sqrt(log_total / n)
        if score > best_score:
            best, best_score = i, score
    return best


class MinMaxStats:
    """The smallest and largest value seen in one search, to scale ``Q`` into [0, 1] before
    PUCT adds the prior term (MuZero, Schrittwieser et al. 2020, appendix B): returns of any
    size (CartPole's hundreds) then weigh against the prior as results in [-1, 1] do. Until two
    different values are seen, values pass unchanged."""

    __slots__ = ("low", "high")

    def __init__(self) -> None:
        self.low, self.high = math.inf, -math.inf

    def update(self, value: float) -> None:
        self.low, self.high = min(self.low, value), max(self.high, value)

    def normalize(self, value: float) -> float:
        if self.high > self.low:
            return (value - self.low) / (self.high - self.low)
        return value


def _select_puct(node: Any, c: float, scale_values: MinMaxStats | None = None) -> int:
    win, losing = _solved_choice(node)
    if win is not None:
        return win
    avoid = set(losing) if len(losing) < len(node.actions) else set()
    scale = c * math.sqrt(node.total + 1)
    best, best_score = 0, -math.inf
    for i, (n, w, p) in enumerate(zip(node.visits, node.value_sum, node.prior)):
        if i in avoid:
            continue
        q = (w / n if scale_values is None else scale_values.normalize(w / n)) if n else 0.0
        score = q + scale * p / (1 + n)
        if score > best_score:
            best, best_score = i, score
    return best


def random_playout(game: TurnBasedGame, rng: random.Random, max_moves: int | None = None) -> np.ndarray:
    """Play uniformly random legal moves to the end, or for at most ``max_moves`` moves; the
    outcome per player then (the return so far, for a game cut short). Moves ``game``."""
    moves = 0
    while not game.is_terminal() and (max_moves is None or moves < max_moves):
        game.step(rng.choice(legal_moves(game)))
        moves += 1
    return game.outcome()


def search(
    game: TurnBasedGame,
    simulations: int,
    rule: str = "uct",
    c: float = 1.4,
    evaluate: Evaluator | None = None,
    rng: random.Random | None = None,
    noise: tuple[float, float, np.random.Generator] | None = None,
    allowed: np.ndarray | None = None,
    scale_values: bool = False,
    playout_moves: int | None = None,
) -> Node:
    """Search from the game's current position; return the root (its ``visits`` per legal move).

    :param game: the game at the root position (left there on return).
    :param simulations: simulations to run (each adds one leaf).
    :param rule: ``"uct"`` (random playouts, unless ``evaluate`` is given) or ``"puct"`` (needs
        ``evaluate`` for the priors and values).
    :param c: the exploration constant.
    :param evaluate: ``game -> (prior over all actions or None, value per player)`` for a new
        non-terminal leaf; None with ``"uct"``: a random playout.
    :param rng: random source of UCT's tie-breaks and the playouts.
    :param noise: ``(alpha, fraction, numpy rng)``: Dirichlet noise mixed into the root's prior.
    :param allowed: a bool mask over all actions: the root's moves are the legal ones it allows
        (the env's action mask, when the agent is given one).
    :param scale_values: ``Q`` scaled by the range of values seen in this search
        (:class:`MinMaxStats`), for rewards outside [-1, 1]. Always on for a one-player game (a
        single-player env, :class:`~rladapt.search.game.EnvGame`), whose outcome is a return of any
        size; such a game is never solved either (an episode's end is no win or loss).
    :param playout_moves: the most moves of a random playout (None: to the end of the game); a
        playout cut short is valued by the return so far.
    :raises ValueError: the root position is terminal, or an unknown rule.
    """
    if rule not in ("uct", "puct"):
        raise ValueError(f"rule must be 'uct' or 'puct', got {rule!r}")
    if rule == "puct" and evaluate is None:
        raise ValueError("PUCT needs an evaluator for the priors and values")
    rng = rng or random.Random()
    exact = game.num_players > 1
    scale_values = scale_values or not exact
    root_state = game.clone()
    root = Node(game, exact)
    if root.terminal:
        raise ValueError("the game is over: there is no move to search for")
    if allowed is not None:
        moves = [a for a in root.actions if allowed[a]]
        if not moves:
            raise ValueError(f"the action mask allows none of the legal moves {root.actions}")
        root.actions, root.visits, root.value_sum, root.children = moves, [0] * len(moves), [0.0] * len(moves), [None] * len(moves)

    def leaf_value(node: Node) -> np.ndarray:
        if evaluate is None:
            return random_playout(game, rng, playout_moves)
        prior, value = evaluate(game)
        if prior is not None:
            node.set_prior(prior)
        return value

    bounds = MinMaxStats() if scale_values else None
    if rule == "puct":
        leaf_value(root)
        if noise is not None:
            root.add_noise(*noise)
    for _ in range(simulations):
        node, path = root, []
        while True:
            i = _select_uct(node, c, rng, bounds) if rule == "uct" else _select_puct(node, c, bounds)
            path.append((node, i))
            game.step(node.actions[i])
            child = node.children[i]
            if child is None:
                child = node.children[i] = Node(game, exact)
                value = child.outcome if child.terminal else leaf_value(child)
                break
            if child.terminal:
                value = child.outcome
                break
            node = child
        for visited, i in path:
            visited.visits[i] += 1
            visited.total += 1
            visited.value_sum[i] += value[visited.player]
            if bounds is not None:
                bounds.update(visited.value_sum[i] / visited.visits[i])
        for visited, _ in reversed(path):
            if not visited.solve():
                break
        game.restore(root_state)
        if root.proven is not None and len(root.actions) > 1 and _solved_choice(root)[0] is not None:
            break  # a proved win: more simulations cannot change the move
    return root


def best_move(root: Node) -> int:
    """The move to play after a search: a solved win, else the most visited move that is not a
    solved loss (all solved losses: the most visited)."""
    win, losing = _solved_choice(root)
    if win is not None:
        return root.actions[win]
    candidates = [i for i in range(len(root.actions)) if i not in losing] or list(range(len(root.actions)))
    return root.actions[max(candidates, key=lambda i: root.visits[i])]


def visit_policy(root: Node, num_actions: int, temperature: float = 1.0) -> np.ndarray:
    """The search policy: visit counts over all actions, to the power ``1 / temperature`` and
    normalised (temperature 0: all the mass on :func:`best_move`)."""
    policy = np.zeros(num_actions)
    visits = np.asarray(root.visits, dtype=np.float64)
    if temperature == 0 or visits.sum() == 0:
        policy[best_move(root)] = 1.0
        return policy
    weights = visits ** (1.0 / temperature)
    policy[root.actions] = weights / weights.sum()
    return policy


#: A learned model for :func:`search_model`: ``(hidden state, action) -> (next hidden state,
#: reward to the mover, prior over all actions, value for the player to move next)``.
Dynamics = Callable[[Any, int], tuple[Any, float, np.ndarray, float]]


class LatentNode:
    """A position of a learned model's search (MuZero): a hidden state instead of a game, a
    reward on every edge, and the same statistics as :class:`Node` (per move the prior, the
    visit count and the sum of returns for the player to move), so PUCT selects in both alike.

    :param state: the model's hidden state here (None until the edge into it is expanded).
    :param actions: the moves searched from here (all actions below the root: a model knows no rules).
    :param prior: the prior over ``actions`` (normalised).
    """

    __slots__ = ("state", "actions", "prior", "visits", "value_sum", "reward", "children", "total", "player", "proven")

    def __init__(self, state: Any, actions: list[int], prior: np.ndarray) -> None:
        self.state = state
        self.actions = actions
        p = np.asarray(prior, dtype=np.float64)[actions]
        total = p.sum()
        self.prior = (p / total).tolist() if total > 0 else [1.0 / len(actions)] * len(actions)
        self.visits = [0] * len(actions)
        self.value_sum = [0.0] * len(actions)
        #: The reward of each move for the player who makes it (predicted once the move is expanded).
        self.reward = [0.0] * len(actions)
        self.children: list[LatentNode | None] = [None] * len(actions)
        self.total = 0
        self.player, self.proven = 0, None  # what the solved-move checks read: nothing is solved in a model

    add_noise = Node.add_noise


def search_model(
    state: Any,
    prior: np.ndarray,
    dynamics: Dynamics,
    simulations: int,
    c: float = 1.25,
    discount: float = 1.0,
    alternate: bool = False,
    noise: tuple[float, float, np.random.Generator] | None = None,
    allowed: np.ndarray | None = None,
) -> LatentNode:
    """PUCT search in a learned model (MuZero); return the root (its ``visits`` per move).

    The return through a move is ``reward + discount * value`` of the position it leads to, from
    the mover's view: with ``alternate`` (two-player games, turns alternating) the next
    position's value is the other player's and enters negated. ``Q`` is scaled by the range of
    returns seen in this search (:class:`MinMaxStats`) before the prior term is added.

    :param state: the root's hidden state (the representation of the observation).
    :param prior: the prediction's prior over all actions at the root.
    :param dynamics: ``(state, action) -> (next state, reward, prior, value)``.
    :param simulations: simulations to run (each expands one edge).
    :param c: the exploration constant.
    :param discount: the discount of a move's return.
    :param alternate: the player to move changes with every move.
    :param noise: ``(alpha, fraction, numpy rng)``: Dirichlet noise mixed into the root's prior.
    :param allowed: a bool mask over all actions: the root's moves (the legal moves); None: all.
    :raises ValueError: the mask allows no move.
    """
    num_actions = len(prior)
    moves = list(range(num_actions)) if allowed is None else np.flatnonzero(allowed).tolist()
    if not moves:
        raise ValueError("the action mask allows no move: there is nothing to search")
    root = LatentNode(state, moves, prior)
    if noise is not None:
        root.add_noise(*noise)
    every_move = list(range(num_actions))
    bounds = MinMaxStats()
    sign = -1.0 if alternate else 1.0
    for _ in range(simulations):
        node, path = root, []
        while True:
            i = _select_puct(node, c, bounds)
            path.append((node, i))
            child = node.children[i]
            if child is None:
                next_state, reward, child_prior, value = dynamics(node.state, node.actions[i])
                node.reward[i] = float(reward)
                node.children[i] = LatentNode(next_state, every_move, child_prior)
                break
            node = child
        for visited, i in reversed(path):  # the leaf's value, then each move's return, from its mover's view
            value = visited.reward[i] + discount * sign * value
            visited.visits[i] += 1
            visited.total += 1
            visited.value_sum[i] += value
            bounds.update(value)
    return root
