import pathlib
import sys

# Shared verify helpers live in molecule/shared/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
