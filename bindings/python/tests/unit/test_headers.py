"""Headers: case-insensitive multi-map semantics and injection safety."""

import unittest

from policyexec import Headers, _text, to_bytes


class HeadersTest(unittest.TestCase):
    def setUp(self):
        self.h = Headers([("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
                          ("set-cookie", "b=2")])

    def test_lookup_is_case_insensitive(self):
        self.assertEqual(self.h["content-type"], "text/plain")
        self.assertEqual(self.h.get("CONTENT-TYPE"), "text/plain")
        self.assertIn("SET-COOKIE", self.h)
        self.assertIn(b"set-cookie", self.h)
        self.assertNotIn("x-missing", self.h)
        self.assertIsNone(self.h.get("x-missing"))
        self.assertEqual(self.h.get("x-missing", "d"), "d")
        with self.assertRaises(KeyError):
            self.h["x-missing"]

    def test_multiple_values_keep_their_order(self):
        self.assertEqual(self.h.getall("set-cookie"), ["a=1", "b=2"])
        self.assertEqual(self.h["set-cookie"], "a=1")
        self.h.add("Set-Cookie", "c=3")
        self.assertEqual(self.h.getall("SET-COOKIE"), ["a=1", "b=2", "c=3"])
        self.assertEqual(self.h.getall("x-missing"), [])
        self.assertIsNone(self.h.getall("x-missing", None))

    def test_len_iter_and_items(self):
        self.assertEqual(len(self.h), 2)
        self.assertEqual(list(self.h), ["Content-Type", "Set-Cookie"])
        self.assertEqual(self.h.items(), [("Content-Type", "text/plain"),
                                          ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    def test_setitem_replaces_every_value(self):
        self.h["SET-COOKIE"] = "z=9"
        self.assertEqual(self.h.getall("set-cookie"), ["z=9"])
        self.assertEqual(self.h.keys(), ["Content-Type", "SET-COOKIE"])

    def test_remove_and_delitem(self):
        self.assertTrue(self.h.remove("set-cookie"))
        self.assertFalse(self.h.remove("set-cookie"))
        del self.h["content-type"]
        self.assertEqual(len(self.h), 0)
        with self.assertRaises(KeyError):
            del self.h["content-type"]

    def test_setall(self):
        self.h.setall("x-list", ["1", b"2"])
        self.assertEqual(self.h.getall("x-list"), ["1", "2"])
        self.h.setall("x-list", [])
        self.assertNotIn("x-list", self.h)

    def test_bad_names_are_refused_at_once(self):
        for name in ["", "bad name", "bad:name", "x\r\ninjected", "caf\u00e9", b"a\x00b", "(x)"]:
            with self.subTest(name=name):
                with self.assertRaises(ValueError):
                    self.h[name] = "v"
                with self.assertRaises(ValueError):
                    self.h.add(name, "v")
        self.assertEqual(len(self.h), 2)

    def test_bad_values_are_refused_at_once(self):
        for value in ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\x00b", b"a\r\nb", "\ud800"]:
            with self.subTest(value=value):
                with self.assertRaises(ValueError):
                    self.h["x-v"] = value
                with self.assertRaises(ValueError):
                    self.h.setall("x-v", ["ok", value])
        self.assertNotIn("x-v", self.h)

    def test_wrong_types_are_refused(self):
        with self.assertRaises(TypeError):
            self.h["x-n"] = 3
        with self.assertRaises(TypeError):
            self.h[3] = "x"

    def test_bytes_and_text_round_trip(self):
        raw = b"\xff\xfe caf\xc3\xa9"
        self.h["x-raw"] = raw
        self.assertEqual(self.h["x-raw"], "\udcff\udcfe caf\u00e9")
        self.assertEqual(to_bytes(self.h["x-raw"]), raw)
        self.h["x-euro"] = "\u20ac"
        self.assertEqual(to_bytes(self.h["x-euro"]), "\u20ac".encode("utf-8"))
        self.h["x-tab"] = "a\tb"  # HTAB is allowed in field values
        self.assertEqual(self.h["x-tab"], "a\tb")


class FastChecksTest(unittest.TestCase):
    """``[]=`` checks known str names and printable ASCII values on a fast
    path: it must accept and refuse exactly what the full checks do."""

    VALUES = ["", "v", " spaced out ", "a\tb", "\x7f", "\x01", "caf\u00e9", "\u20ac",
              "\udcff", "a\r\nb", "a\nb", "a\rb", "a\x00b", "\ud800", b"x", b"a\rb",
              bytearray(b"y"), 3, None]

    @staticmethod
    def expected(value):
        """The documented rule, written out: str or bytes-like, encodable,
        and free of CR, LF, NUL and DEL."""
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "surrogateescape")
        if not isinstance(value, str):
            return TypeError
        try:
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return ValueError
        return ValueError if any(c in value for c in "\r\n\x00\x7f") else value

    def outcome(self, fn, *args):
        try:
            fn(*args)
        except (TypeError, ValueError) as exc:
            return type(exc)
        return None

    def test_values_on_fast_and_full_paths_agree(self):
        for name in ("X-Seen", "x-seen", b"X-Seen"):  # new, then known, then bytes
            for value in self.VALUES:
                with self.subTest(name=name, value=value):
                    h = Headers._from_wire(["X-Seen", "old"], 0)
                    want = self.expected(value)
                    if isinstance(want, type):
                        self.assertIs(self.outcome(h.__setitem__, name, value), want)
                        self.assertIs(self.outcome(_text.header_value, value), want)
                        self.assertEqual(h.getall("x-seen"), ["old"])
                        self.assertIsNone(h._undo)  # nothing to commit or roll back
                    else:
                        h[name] = value
                        self.assertEqual(h.getall("X-SEEN"), [want])
                        self.assertIs(type(h["x-seen"]), str)

    def test_known_names_keep_their_checks(self):
        h = Headers()
        for _ in range(2):  # the second time, "X-Known" is a known name
            h["X-Known"] = "1"
            for bad in ["x known", "x:known", "X-Known\r\n", "X-Known\x00", ""]:
                with self.assertRaises(ValueError):
                    h[bad] = "v"
        self.assertEqual(h.items(), [("X-Known", "1")])

    def test_a_str_subclass_name_is_stored_as_str(self):
        class Name(str):
            pass

        h = Headers()
        h["x-sub"] = "1"  # known from now on
        h[Name("X-Sub")] = "2"
        self.assertEqual(h.items(), [("X-Sub", "2")])
        self.assertIs(type(h.keys()[0]), str)

    def test_the_known_names_are_bounded(self):
        h = Headers()
        for i in range(3 * _text._VALID_NAMES_MAX):
            h[f"x-n{i}"] = "v"
        self.assertLessEqual(len(_text._VALID_NAMES), _text._VALID_NAMES_MAX)
        self.assertEqual(len(h), 3 * _text._VALID_NAMES_MAX)


class ChangeTrackingTest(unittest.TestCase):
    """What the worker reports per step: net changes, full value lists."""

    def setUp(self):
        self.h = Headers._from_wire(["Host", "h", "X-A", "1", "x-a", "2", "X-Keep", "k"], 0)

    def commit(self):
        edits = []
        self.h._commit(edits)
        return edits

    def test_no_change_no_edit(self):
        self.h["x-keep"] = "k"
        self.h.add("x-new", "v")
        self.h.remove("x-new")
        self.assertEqual(self.commit(), [])

    def test_edits_carry_every_value(self):
        self.h.add("x-a", "3")
        self.h.remove("host")
        self.h["X-New"] = "n"
        self.assertEqual(sorted(self.commit()), [
            (0, b"Host", []), (0, b"X-A", [b"1", b"2", b"3"]), (0, b"X-New", [b"n"])])
        self.assertEqual(self.commit(), [])  # a new step starts clean

    def test_wire_names_are_grouped_case_insensitively(self):
        self.assertEqual(self.h.items(), [("Host", "h"), ("X-A", "1"), ("X-A", "2"),
                                          ("X-Keep", "k")])
        self.assertEqual(self.h.keys(), ["Host", "X-A", "X-Keep"])
        self.assertEqual(len(Headers._from_wire((), 1)), 0)

    def test_setitem_then_commit_and_rollback(self):
        self.h["x-a"] = "only"
        self.h["x-a"] = "only"  # the second set of a step logs nothing more
        self.assertEqual(self.commit(), [(0, b"x-a", [b"only"])])  # []= respells
        self.h["x-a"] = "only"  # same value: no edit
        self.assertEqual(self.commit(), [])
        self.h["X-A"] = "again"
        self.h._rollback()
        self.assertEqual(self.h.items()[1:], [("x-a", "only"), ("X-Keep", "k")])
        self.assertEqual(self.commit(), [])

    def test_rollback_restores_the_step_start(self):
        self.h.add("x-a", "3")
        self.h.remove("host")
        self.h["x-new"] = "n"
        self.h._rollback()
        self.assertEqual(sorted(self.h.items()), [("Host", "h"), ("X-A", "1"), ("X-A", "2"),
                                                  ("X-Keep", "k")])
        self.assertEqual(self.commit(), [])


if __name__ == "__main__":
    unittest.main()
