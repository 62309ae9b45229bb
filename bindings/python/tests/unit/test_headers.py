"""Headers: case-insensitive multi-map semantics and injection safety."""

import unittest

from policyexec import Headers, to_bytes


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
