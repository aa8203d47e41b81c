"""Reports as files: the JSON answer of a read route as CSV or as an Excel workbook."""
