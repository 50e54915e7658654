"""``teilhabe report``: a self-contained HTML report of the k-suppressed views (docs/report.md).

``figures`` reads the aggregate views into plain rows, ``plots`` draws them as inline SVG,
``html`` puts both into one file that needs no network and no JavaScript to read or print.
"""
