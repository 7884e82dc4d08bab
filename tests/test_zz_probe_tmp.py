from tests.test_soap_legacy import *  # noqa

def test_probe(paint):
    c = paint.login()
    for params in [{"maxNotifications": {"a": "1"}}, {"maxNotifications": "9" * 5000}, {"notificationTypes": ["OPEN", None]},
                   {"notificationTypes": {"x": "OPEN"}}, {"markAsReadInd": {"a": "b"}}, {"markAsReadInd": ["Y"]},
                   {"notificationTypes": []}, {"maxNotifications": " 7 "}, {"maxNotifications": "+5"}, {"notificationTypes": "signup"}]:
        print(params if len(str(params)) < 100 else "big", paint.get_batch(c, markAsReadInd="N", **params) if "markAsReadInd" not in params else paint.get_batch(c, **params))
