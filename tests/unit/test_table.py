"""Files as tables: workbooks, encodings, separators, preambles, requoted rows and decimal commas,
each with rows written here."""

from __future__ import annotations

import io

import pytest

from pipeline.journal.formats import is_known_header
from pipeline.journal.table import FileReadError, decimal_style, open_table

HEADER = "Date(UTC),Pair,Side,Price,Executed,Amount,Fee"
ROW = "2024-11-16 14:35:02,SOLUSDT,BUY,110.03,0.18SOL,19.8054USDT,0.0198USDT"


def rows(data: bytes) -> tuple[list[str], list[tuple[int, list[str], list[str]]]]:
    table = open_table(data, is_known_header)
    return table.header, [(r.line, r.cells, [p.rule for p in r.problems]) for r in table.rows()]


def test_utf16_with_bom_as_excel_saves_it_and_crlf() -> None:
    data = ("\r\n".join([HEADER.replace(",", "\t"), ROW.replace(",", "\t")]) + "\r\n").encode("utf-16")
    header, found = rows(data)
    assert header == HEADER.split(",") and found == [(2, ROW.split(","), [])]


def test_semicolons_and_decimal_commas_become_points() -> None:
    data = "Date(UTC);Pair;Side;Price;Executed;Amount;Fee\n2024-11-16 14:35:02;SOLUSDT;BUY;110,03;0,18;19,8054;0,5\n"
    _, found = rows(data.encode())
    assert found[0][1][3:] == ["110.03", "0.18", "19.8054", "0.5"]


def test_a_number_that_could_be_either_is_refused_not_guessed() -> None:
    data = "A;B;C\n1,234;x;0,5\n7,550.71;y;1\n"  # decimal commas and thousands commas in one file
    _, found = rows(data.encode())
    assert found[0][2] and "1,234 may be 1234 or 1.234" in found[0][2][0]
    assert found[1][1][0] == "7,550.71" and found[1][2] == []  # unambiguous: thousands, read by the parser
    assert decimal_style(iter(["0,5", "12,25"])) == "comma"
    assert decimal_style(iter(["0.5", "1,234.5"])) == "point"


def test_european_thousands_dots_with_a_decimal_comma() -> None:
    _, found = rows(b"A;B\n1.234,5;0,1\n1.500;0,2\n")
    assert found[0][1] == ["1234.5", "0.1"]
    assert found[1][2] and "1.500 may be 1.500 or 1500" in found[1][2][0]


def test_quoted_thousands_in_a_comma_file_stay_for_the_parser() -> None:
    _, found = rows(f'{HEADER}\n2024-11-16 14:35:02,BTCUSDT,BUY,"91,234.5",0.01BTC,912.345USDT,0\n'.encode())
    assert found[0][1][3] == "91,234.5" and found[0][2] == []


def test_rows_quoted_whole_and_unquoted_rows_with_doubled_quotes() -> None:
    whole = '"2024-11-16 14:35:02,SOLUSDT,BUY,""1,100.5"",0.18SOL,19.8USDT,0"'
    doubled = '2024-11-16 14:35:03,SOLUSDT,BUY,""1,100.5"",0.18SOL,19.8USDT,0'
    _, found = rows(f"\ufeff{HEADER}\n{whole}\n{doubled}\n".encode())
    assert [f[1][3] for f in found] == ["1,100.5", "1,100.5"]
    assert [len(f[1]) for f in found] == [7, 7]


def test_preamble_lines_before_the_header_are_skipped_and_lines_counted() -> None:
    data = (
        "UID: 1234,Company Name: ,Country: \n"
        "Spot Pairs,Order Type,Direction,Filled Value,Filled Price,Filled Quantity,Fees,Transaction ID,Order No.,"
        "Timestamp (UTC)\n"
        "SOLUSDT,LIMIT,BUY,150,150,1,0.001,T-1,O-1,14:35 2024-11-16\n"
    )
    table = open_table(data.encode(), is_known_header)
    assert table.header_line == 2 and table.header[0] == "Spot Pairs"
    assert [r.line for r in table.rows()] == [3]
    disclaimer = "You can use this transaction report to inform your likely tax obligations.\n\n" + HEADER + "\n" + ROW
    header, found = rows(disclaimer.encode())
    assert header == HEADER.split(",") and found[0][0] == 4


def test_a_bom_in_every_cell_and_a_bom_mangled_into_a_question_mark() -> None:
    data = "\ufeffA,\ufeffB\n\ufeff1,\ufeff2\n".encode()
    assert rows(data) == (["A", "B"], [(2, ["1", "2"], [])])
    assert rows(b"?Transaction id;Date\n1;2020-01-01\n")[0] == ["Transaction id", "Date"]


def test_cp1252_falls_back_with_a_warning() -> None:
    table = open_table(f"{HEADER},Note\n{ROW},Café\n".encode("cp1252"), is_known_header)
    assert table.encoding == "cp1252" and table.warnings
    assert [r.cells[-1] for r in table.rows()] == ["Café"]


def test_xlsx_workbooks_are_read_from_their_first_sheet() -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Binance spot trade history"])
    sheet.append(HEADER.split(","))
    sheet.append(["2024-11-16 14:35:02", "SOLUSDT", "BUY", 110.03, "0.18SOL", "19.8054USDT", "0.0198USDT"])
    out = io.BytesIO()
    book.save(out)
    table = open_table(out.getvalue(), is_known_header)
    assert table.workbook and table.header == HEADER.split(",") and table.header_line == 2
    assert [(r.line, r.cells) for r in table.rows()] == [(3, ROW.split(","))]


def test_binary_and_empty_files_are_refused() -> None:
    with pytest.raises(FileReadError, match="ZIP"):
        open_table(b"PK\x03\x04" + bytes(100))
    with pytest.raises(FileReadError, match="empty"):
        open_table(b"\n\n")
