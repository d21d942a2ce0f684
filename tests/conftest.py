import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("WANDB_MODE", "offline")

import warnings  # noqa: E402

import gymnasium as gym  # noqa: E402

import nested_env  # noqa: E402

try:
    import ale_py  # noqa: E402

    gym.register_envs(ale_py)
except ImportError:  # pragma: no cover - the test extra installs ale-py
    pass

nested_env.register()
warnings.filterwarnings("ignore", module="gymnasium")
