import pathlib
import sys

# --import-mode=importlib does not put test folders on sys.path; the helper
# module has a package-specific name so that it cannot shadow another
# package's helpers when every package's tests run together.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
