"""Not a package: the source root that holds `concord_pipelines` (pyproject's wheel `packages`).

Without this file, `import pipelines` from the repository root would import this folder as an empty
namespace package and look like this project's old import name; it now says where the code is.
"""

raise ImportError(
    "`pipelines` is this repository's source folder, not a package: "
    "import concord_pipelines instead (e.g. `from concord_pipelines import concord_source`)"
)
