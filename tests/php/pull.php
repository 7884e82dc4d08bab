<?php
/*
 * A legacy pull client: logs in through the encoded WSDL with PHP's SoapClient, pulls
 * OPEN and CLICK event notifications, decodes them and logs out, written the way the
 * platform's PHP samples are. Prints what it got as JSON.
 *
 * Usage: php pull.php WSDL_URL USER PASSWORD [MARKS]
 *   MARKS: the markAsReadInd of each getBatch in turn, comma-separated (default "N,Y").
 */

class PaintException extends Exception {}

// One handleRequest call; the Result on success, an exception for any error code.
function paint_request($wsdlUrl, $contextId, $className, $processName, $entityData, $processData)
{
    // Not cached: every test server is new, and its WSDL with it.
    $client = new SoapClient($wsdlUrl, array("trace" => "0", "cache_wsdl" => WSDL_CACHE_NONE));
    $r = $client->handleRequest($contextId, $className, $processName, $entityData, $processData);
    switch ($r["result"]) {
        case "success":
            return $r;
        case "bean_exception_validation":
        case "bean_exception_security":
        case "bean_exception_system":
            throw new PaintException($r["result"] . ": " . json_encode($r["resultData"]));
        default:
            throw new PaintException("Unhandled exception thrown from PAINT");
    }
}

$wsdlUrl  = $argv[1];
$userName = $argv[2];
$password = $argv[3];
$marks    = explode(",", isset($argv[4]) ? $argv[4] : "N,Y");

$r = paint_request($wsdlUrl, null, "bus_facade_context", "login",
                   array("userName" => $userName, "password" => $password), null);
$contextId = $r["resultData"]["bus_entity_context"]["beanId"];

$output = array("contextId" => $contextId, "batches" => array());
try {
    foreach ($marks as $markAsReadInd) {
        $processData = array("notificationTypes" => "OPEN,CLICK",
                             "maxNotifications"  => 1000,
                             "markAsReadInd"     => $markAsReadInd);
        $r = paint_request($wsdlUrl, $contextId, "bus_facade_eventNotification", "getBatch", null, $processData);
        $batch = $r["resultData"]["bus_entity_eventNotificationBatch"];

        $eventMeta = array();
        foreach ($batch["eventMeta"] as $type => $columns) {
            $eventMeta[] = array($type, $columns);
        }
        $output["batches"][] = array(
            "markAsReadInd" => $markAsReadInd,
            "eventCount"    => $batch["eventCount"],
            "eventMeta"     => $eventMeta,
            "eventData"     => base64_decode($batch["eventData"]),
        );
    }
} finally {
    // Always log out, even after an error.
    $r = paint_request($wsdlUrl, $contextId, "bus_facade_context", "logout", null, null);
    $output["logout"] = $r;
}
echo json_encode($output), "\n";
